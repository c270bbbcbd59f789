//! The ACPI tables that say how many CPUs the machine has: the RSDP (which the bootloader finds
//! and hands over), the RSDT or XSDT it points to, and the MADT ("APIC", ACPI 6.5 section 5.2.12)
//! that lists every processor's local APIC.
//!
//! Only parsing lives here, over physical memory the caller lends through a reader function, so
//! the same code runs on literal tables under `cargo test`. Every length comes from the firmware
//! and is checked (checksums included) before anything after it is read.

/// Longest table accepted: the MADT of a 1024-CPU machine is about 16 KiB; a length beyond this
/// is a corrupt header, not a table.
const MAX_TABLE: usize = 1 << 20;

/// What stops the CPUs from being counted; the kernel then runs on the boot CPU only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// No "RSD PTR " signature or a bad checksum at the address the bootloader gave.
    BadRsdp,
    /// A table (named by its signature) whose checksum or length is wrong.
    BadTable([u8; 4]),
    /// The RSDT/XSDT lists no "APIC" table.
    NoMadt,
    /// Memory the tables point at is not readable.
    Unreadable(u64),
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiError::BadRsdp => {
                write!(f, "no valid ACPI RSDP at the address the bootloader gave")
            }
            AcpiError::BadTable(sig) => write!(
                f,
                "ACPI table {} has a bad checksum or length",
                core::str::from_utf8(sig).unwrap_or("????")
            ),
            AcpiError::NoMadt => write!(f, "the ACPI tables have no MADT (APIC)"),
            AcpiError::Unreadable(a) => write!(f, "ACPI table at {a:#x} is not readable"),
        }
    }
}

/// One processor the MADT lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cpu {
    /// Its local APIC (or x2APIC) id: the destination of the start-up IPIs.
    pub apic_id: u32,
    /// Usable now (flags bit 0). A disabled one that is `online_capable` could be hot-added;
    /// neither kind is started.
    pub enabled: bool,
}

/// The MADT, checked.
#[derive(Debug, Clone, Copy)]
pub struct Madt<'a> {
    /// Physical address of the local APICs' registers (the 64-bit override if there is one).
    pub local_apic: u64,
    /// The entries after the fixed part.
    entries: &'a [u8],
}

impl<'a> Madt<'a> {
    /// Every processor entry, in table order (the boot CPU is usually first, but not always).
    pub fn cpus(&self) -> impl Iterator<Item = Cpu> + 'a {
        Entries(self.entries).filter_map(|(kind, body)| match kind {
            // Processor local APIC: ACPI processor uid, APIC id, flags.
            0 if body.len() >= 6 => Some(Cpu {
                apic_id: u32::from(body[1]),
                enabled: body[2] & 1 != 0,
            }),
            // Processor local x2APIC: reserved (2), x2APIC id, flags, uid. Firmware lists ids
            // of 255 and above here.
            9 if body.len() >= 14 => Some(Cpu {
                apic_id: u32::from_le_bytes([body[2], body[3], body[4], body[5]]),
                enabled: body[6] & 1 != 0,
            }),
            _ => None,
        })
    }
}

impl Madt<'_> {
    /// Enabled CPUs, the boot CPU included (at least 1: the one running this).
    pub fn enabled(&self) -> usize {
        self.cpus().filter(|c| c.enabled).count().max(1)
    }

    /// The application processors to start when `cores` CPUs may run (`None`: all): the
    /// enabled CPUs but the boot CPU (`boot_apic_id`), in table order, `cores - 1` at most.
    pub fn to_start(
        &self,
        boot_apic_id: u32,
        cores: Option<usize>,
    ) -> impl Iterator<Item = Cpu> + '_ {
        let aps = cores.map_or(usize::MAX, |c| c.saturating_sub(1));
        self.cpus()
            .filter(move |c| c.enabled && c.apic_id != boot_apic_id)
            .take(aps)
    }
}

/// (type, body without the two-byte type/length header) of each MADT entry; stops at the first
/// entry whose length is impossible.
struct Entries<'a>(&'a [u8]);

impl<'a> Iterator for Entries<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let [kind, len, ..] = *self.0 else {
            return None;
        };
        let len = usize::from(len);
        if len < 2 || len > self.0.len() {
            self.0 = &[];
            return None;
        }
        let (entry, rest) = self.0.split_at(len);
        self.0 = rest;
        Some((kind, &entry[2..]))
    }
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b)) == 0
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | (u64::from(u32_at(b, at + 4)) << 32)
}

/// A system description table at `phys` with signature `sig`, whole and checked.
fn table<'a>(
    read: &impl Fn(u64, usize) -> Option<&'a [u8]>,
    phys: u64,
) -> Result<&'a [u8], AcpiError> {
    let header = read(phys, 36).ok_or(AcpiError::Unreadable(phys))?;
    let mut sig = [0u8; 4];
    sig.copy_from_slice(&header[..4]);
    let len = u32_at(header, 4) as usize;
    if !(36..=MAX_TABLE).contains(&len) {
        return Err(AcpiError::BadTable(sig));
    }
    let whole = read(phys, len).ok_or(AcpiError::Unreadable(phys))?;
    if !checksum_ok(whole) {
        return Err(AcpiError::BadTable(sig));
    }
    Ok(whole)
}

/// Find and check the MADT from the RSDP at physical address `rsdp`. `read(phys, len)` lends
/// `len` bytes of physical memory (the kernel's mapping of all RAM; a literal table in tests).
pub fn madt<'a>(
    rsdp: u64,
    read: impl Fn(u64, usize) -> Option<&'a [u8]>,
) -> Result<Madt<'a>, AcpiError> {
    let r = read(rsdp, 20).ok_or(AcpiError::BadRsdp)?;
    if &r[..8] != b"RSD PTR " || !checksum_ok(r) {
        return Err(AcpiError::BadRsdp);
    }
    // Revision 2 and later (ACPI 2.0+) add the XSDT's 64-bit address, under a second checksum
    // over 36 bytes; prefer it, as the spec asks.
    let (root, wide) = if r[15] >= 2 {
        let x = read(rsdp, 36).ok_or(AcpiError::BadRsdp)?;
        if !checksum_ok(x) {
            return Err(AcpiError::BadRsdp);
        }
        match u64_at(x, 24) {
            0 => (u64::from(u32_at(r, 16)), false),
            xsdt => (xsdt, true),
        }
    } else {
        (u64::from(u32_at(r, 16)), false)
    };
    let root = table(&read, root)?;
    let width = if wide { 8 } else { 4 };
    let pointers = &root[36..];
    for p in pointers.chunks_exact(width) {
        let phys = if wide {
            u64_at(p, 0)
        } else {
            u64::from(u32_at(p, 0))
        };
        let head = read(phys, 4).ok_or(AcpiError::Unreadable(phys))?;
        if head != b"APIC" {
            continue;
        }
        let t = table(&read, phys)?;
        if t.len() < 44 {
            return Err(AcpiError::BadTable(*b"APIC"));
        }
        let mut local_apic = u64::from(u32_at(t, 36));
        // Type 5: a 64-bit local APIC address that replaces the 32-bit one.
        for (kind, body) in Entries(&t[44..]) {
            if kind == 5 && body.len() >= 10 {
                local_apic = u64_at(body, 2);
            }
        }
        return Ok(Madt {
            local_apic,
            entries: &t[44..],
        });
    }
    Err(AcpiError::NoMadt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MADT as QEMU's q35 writes it for `-smp 2` (two local APIC entries, an I/O APIC, an
    /// interrupt source override), checksum byte at offset 9 left 0 for `fix`.
    fn madt_bytes(extra: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(b"APIC");
        t.extend_from_slice(&0u32.to_le_bytes()); // length, set below
        t.extend_from_slice(&[1, 0]); // revision, checksum
        t.extend_from_slice(b"BOCHS BXPC    \x01\x00\x00\x00BXPC\x01\x00\x00\x00");
        t.extend_from_slice(&0xfee0_0000u32.to_le_bytes()); // local APIC address
        t.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
        t.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // CPU uid 0, APIC id 0, enabled
        t.extend_from_slice(&[0, 8, 1, 1, 1, 0, 0, 0]); // CPU uid 1, APIC id 1, enabled
        t.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]); // I/O APIC
        t.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]); // IRQ0 -> GSI 2
        t.extend_from_slice(extra);
        fix(&mut t);
        t
    }

    /// Set a table's length and checksum.
    fn fix(t: &mut [u8]) {
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t[9] = 0;
        let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        t[9] = 0u8.wrapping_sub(sum);
    }

    /// Physical memory of one page per table: RSDP at 0x1000, root at 0x2000, a FACP at
    /// 0x3000 (skipped), the MADT at 0x4000.
    struct Memory(Vec<(u64, Vec<u8>)>);

    impl Memory {
        fn read(&self, phys: u64, len: usize) -> Option<&[u8]> {
            self.0.iter().find_map(|(at, bytes)| {
                let off = phys.checked_sub(*at)? as usize;
                bytes.get(off..off + len)
            })
        }
    }

    fn sdt(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        t.extend_from_slice(sig);
        t.extend_from_slice(&[0; 4]);
        t.extend_from_slice(&[1, 0]);
        t.extend_from_slice(&[0; 26]);
        t.extend_from_slice(body);
        fix(&mut t);
        t
    }

    fn rsdp(revision: u8, rsdt: u32, xsdt: u64) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(b"RSD PTR ");
        r.push(0); // checksum over the first 20 bytes
        r.extend_from_slice(b"BOCHS ");
        r.push(revision);
        r.extend_from_slice(&rsdt.to_le_bytes());
        r.extend_from_slice(&36u32.to_le_bytes());
        r.extend_from_slice(&xsdt.to_le_bytes());
        r.extend_from_slice(&[0, 0, 0, 0]); // extended checksum, reserved
        let sum = r[..20].iter().fold(0u8, |s, b| s.wrapping_add(*b));
        r[8] = 0u8.wrapping_sub(sum);
        let sum = r.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        r[32] = 0u8.wrapping_sub(sum);
        r
    }

    fn acpi1(madt: Vec<u8>) -> Memory {
        let mut root = Vec::new();
        root.extend_from_slice(&0x3000u32.to_le_bytes());
        root.extend_from_slice(&0x4000u32.to_le_bytes());
        Memory(vec![
            (0x1000, rsdp(0, 0x2000, 0)),
            (0x2000, sdt(b"RSDT", &root)),
            (0x3000, sdt(b"FACP", &[0; 8])),
            (0x4000, madt),
        ])
    }

    #[test]
    fn qemu_two_cpus_through_the_rsdt() {
        let mem = acpi1(madt_bytes(&[]));
        let m = madt(0x1000, |p, l| mem.read(p, l)).expect("valid tables");
        assert_eq!(m.local_apic, 0xfee0_0000);
        let cpus: Vec<Cpu> = m.cpus().collect();
        assert_eq!(
            cpus,
            [
                Cpu {
                    apic_id: 0,
                    enabled: true
                },
                Cpu {
                    apic_id: 1,
                    enabled: true
                }
            ]
        );
    }

    #[test]
    fn xsdt_preferred_x2apic_entries_and_disabled_cpus() {
        // A disabled CPU (APIC id 2), an x2APIC CPU (id 300) and a 64-bit APIC address override.
        let mut extra = vec![0, 8, 2, 2, 0, 0, 0, 0];
        extra.extend_from_slice(&[9, 16, 0, 0, 0x2c, 1, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0]);
        extra.extend_from_slice(&[5, 12, 0, 0, 0, 0, 0xe0, 0xfe, 1, 0, 0, 0]);
        let mut xsdt = Vec::new();
        xsdt.extend_from_slice(&0x4000u64.to_le_bytes());
        // The RSDT points at a table that is no MADT: only the XSDT leads to one.
        let mem = Memory(vec![
            (0x1000, rsdp(2, 0x2000, 0x5000)),
            (0x2000, sdt(b"RSDT", &0x3000u32.to_le_bytes())),
            (0x3000, sdt(b"FACP", &[0; 8])),
            (0x4000, madt_bytes(&extra)),
            (0x5000, sdt(b"XSDT", &xsdt)),
        ]);
        let m = madt(0x1000, |p, l| mem.read(p, l)).expect("valid tables");
        assert_eq!(m.local_apic, 0x1_fee0_0000);
        let ids: Vec<(u32, bool)> = m.cpus().map(|c| (c.apic_id, c.enabled)).collect();
        assert_eq!(ids, [(0, true), (1, true), (2, false), (300, true)]);
    }

    #[test]
    fn the_boot_cpu_disabled_ones_and_those_beyond_the_limit_are_not_started() {
        // APIC ids 0, 1, 2 (disabled), 3; the boot CPU is 1 here, not the first entry.
        let mem = acpi1(madt_bytes(&[
            0, 8, 2, 2, 0, 0, 0, 0, 0, 8, 3, 3, 1, 0, 0, 0,
        ]));
        let m = madt(0x1000, |p, l| mem.read(p, l)).expect("valid tables");
        assert_eq!(m.enabled(), 3);
        let ids = |cores| m.to_start(1, cores).map(|c| c.apic_id).collect::<Vec<_>>();
        assert_eq!(ids(None), [0, 3]);
        assert_eq!(ids(Some(8)), [0, 3]);
        assert_eq!(ids(Some(2)), [0]);
        assert_eq!(ids(Some(1)), [] as [u32; 0]);
        assert_eq!(ids(Some(0)), [] as [u32; 0]);
    }

    #[test]
    fn bad_checksums_and_missing_tables_are_errors() {
        let mut bad = madt_bytes(&[]);
        bad[40] ^= 1;
        let mem = acpi1(bad);
        assert_eq!(
            madt(0x1000, |p, l| mem.read(p, l)).err(),
            Some(AcpiError::BadTable(*b"APIC"))
        );
        let mut mem = acpi1(madt_bytes(&[]));
        mem.0[0].1[8] ^= 1;
        assert_eq!(
            madt(0x1000, |p, l| mem.read(p, l)).err(),
            Some(AcpiError::BadRsdp)
        );
        let mut mem = acpi1(madt_bytes(&[]));
        mem.0.pop();
        mem.0.push((0x4000, sdt(b"HPET", &[0; 8])));
        assert_eq!(
            madt(0x1000, |p, l| mem.read(p, l)).err(),
            Some(AcpiError::NoMadt)
        );
        // An entry that claims more bytes than the table has ends the walk, not the reader.
        let mem = acpi1(madt_bytes(&[0, 200, 5, 5]));
        let m = madt(0x1000, |p, l| mem.read(p, l)).expect("valid checksum");
        assert_eq!(m.cpus().count(), 2);
    }
}
