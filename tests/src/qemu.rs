//! Building images and running them under QEMU.
