//! Private networks of Linux hosts in network namespaces (filled in by the datapath work).
