//! Shrinking the disk images the `bootloader` crate writes.
//!
//! Its `DiskImageBuilder` sizes the FAT partition at the files' size rounded up to a MiB plus
//! another MiB, and offers no setting for it; with a kernel under 1 MiB that is two thirds
//! padding. So once it has written an image, the partition is rebuilt at the size its files
//! need: the files are read back from the bootloader's own FAT, written into a new FAT of that
//! size, and the disk is cut after it (BIOS: the MBR entry's sector count is rewritten; UEFI: a
//! new GPT is written around the partition). The boot sector and the BIOS second stage are kept
//! byte for byte. The bootloader's stage 2 reads FAT12, FAT16 and FAT32, as UEFI firmware does.

use std::fs::{self, File};
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

const SECTOR: u64 = 512;
/// The MBR's partition table, and the entry of the BIOS image's FAT partition (the second: the
/// first holds the second stage).
const MBR_TABLE: usize = 446;
const MBR_FAT_ENTRY: usize = 1;

/// Zeros after the BIOS image's FAT partition (two of stage 2's disk-read chunks).
const BIOS_TAIL: usize = 32 << 10;

type Files = Vec<(String, Vec<u8>)>;

/// Rebuild the FAT partition of the BIOS image at `path` at the size its files need; returns
/// the image's new size in bytes.
pub fn compact_bios(path: &Path) -> Result<u64, String> {
    let mut image = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if image.len() < 512 || image[510..512] != [0x55, 0xaa] {
        return Err(format!("{} has no MBR", path.display()));
    }
    let entry = MBR_TABLE + 16 * MBR_FAT_ENTRY;
    let start = u64::from(le32(&image[entry + 8..])) * SECTOR;
    let sectors = u64::from(le32(&image[entry + 12..]));
    let end = start + sectors * SECTOR;
    if sectors == 0 || end > image.len() as u64 {
        return Err(format!(
            "{}: no FAT partition in MBR entry 2",
            path.display()
        ));
    }
    let files = read_fat(image[start as usize..end as usize].to_vec())?;
    let fat = write_fat(&files)?;
    let new_sectors = u32::try_from(fat.len() as u64 / SECTOR).map_err(|e| e.to_string())?;
    image.truncate(start as usize);
    image.extend_from_slice(&fat);
    // Stage 2 reads whole 16 KiB chunks, also past a file's last cluster: without disk behind
    // the partition the BIOS read fails and stage 2 hangs.
    image.resize(image.len() + BIOS_TAIL, 0);
    image[entry + 12..entry + 16].copy_from_slice(&new_sectors.to_le_bytes());
    fs::write(path, &image).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(image.len() as u64)
}

/// Rebuild the EFI system partition of the UEFI image at `path` at the size its files need,
/// in a new GPT disk just large enough; returns the image's new size in bytes.
pub fn compact_uefi(path: &Path) -> Result<u64, String> {
    let image = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    // The GPT header (LBA 1) says where the partition entries are; the first is the ESP.
    let header = image
        .get(SECTOR as usize..2 * SECTOR as usize)
        .filter(|h| h.starts_with(b"EFI PART"))
        .ok_or_else(|| format!("{} has no GPT", path.display()))?;
    let entries = le64(&header[72..]) * SECTOR;
    let first = image
        .get(entries as usize + 32..entries as usize + 48)
        .ok_or_else(|| format!("{}: GPT entries out of the image", path.display()))?;
    let (start, last) = (le64(first) * SECTOR, (le64(&first[8..]) + 1) * SECTOR);
    if start == 0 || last > image.len() as u64 || last <= start {
        return Err(format!("{}: no partition in the GPT", path.display()));
    }
    let files = read_fat(image[start as usize..last as usize].to_vec())?;
    let fat = write_fat(&files)?;
    write_gpt_disk(path, &fat)?;
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Every file of a FAT volume, with its path from the root (`efi/boot/bootx64.efi`).
fn read_fat(volume: Vec<u8>) -> Result<Files, String> {
    let fs = fatfs::FileSystem::new(Cursor::new(volume), fatfs::FsOptions::new())
        .map_err(|e| format!("the bootloader's FAT partition does not open: {e}"))?;
    let mut files = Vec::new();
    read_dir(&fs.root_dir(), "", &mut files)?;
    Ok(files)
}

fn read_dir<T: fatfs::ReadWriteSeek>(
    dir: &fatfs::Dir<'_, T>,
    prefix: &str,
    files: &mut Files,
) -> Result<(), String> {
    for entry in dir.iter() {
        let entry = entry.map_err(|e| format!("reading the FAT partition: {e}"))?;
        let name = entry.file_name();
        if name == "." || name == ".." {
            continue;
        }
        let path = format!("{prefix}{name}");
        if entry.is_dir() {
            read_dir(&entry.to_dir(), &format!("{path}/"), files)?;
        } else {
            let mut data = Vec::new();
            entry
                .to_file()
                .read_to_end(&mut data)
                .map_err(|e| format!("reading {path} from the FAT partition: {e}"))?;
            files.push((path, data));
        }
    }
    Ok(())
}

/// A FAT volume holding `files`, of the smallest size (in steps of 16 KiB) they fit in.
fn write_fat(files: &Files) -> Result<Vec<u8>, String> {
    const STEP: usize = 16 << 10;
    // Each file rounded up to 4 KiB clusters, and room for the tables and directories.
    let mut size = files
        .iter()
        .map(|(_, d)| d.len().div_ceil(4096) * 4096)
        .sum::<usize>()
        + STEP;
    let limit = 4 * size + (4 << 20);
    while size <= limit {
        if let Ok(volume) = try_write_fat(files, size) {
            return Ok(volume);
        }
        size += STEP;
    }
    Err(format!(
        "the bootloader's files do not fit in a FAT volume of {limit} bytes"
    ))
}

fn try_write_fat(files: &Files, size: usize) -> std::io::Result<Vec<u8>> {
    let mut volume = Cursor::new(vec![0u8; size]);
    fatfs::format_volume(
        &mut volume,
        fatfs::FormatVolumeOptions::new().volume_label(*b"SIDESTEP   "),
    )?;
    {
        let fs = fatfs::FileSystem::new(&mut volume, fatfs::FsOptions::new())?;
        write_files(&fs.root_dir(), files)?;
        fs.unmount()?;
    }
    Ok(volume.into_inner())
}

fn write_files<T: fatfs::ReadWriteSeek>(
    root: &fatfs::Dir<'_, T>,
    files: &Files,
) -> std::io::Result<()> {
    for (path, data) in files {
        let mut dir = root.clone();
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().unwrap_or_default();
        for part in parts {
            dir = match dir.open_dir(part) {
                Ok(d) => d,
                Err(_) => dir.create_dir(part)?,
            };
        }
        let mut file = dir.create_file(name)?;
        file.truncate()?;
        file.write_all(data)?;
    }
    Ok(())
}

/// Write a GPT disk at `path` whose one partition, an EFI system partition, holds `fat`.
fn write_gpt_disk(path: &Path, fat: &[u8]) -> Result<(), String> {
    let err = |e: std::io::Error| format!("cannot write the GPT of {}: {e}", path.display());
    // A primary GPT (protective MBR, header, 32 sectors of entries) before the partition and
    // the backup (entries, header) after it.
    let disk_size = (2 + 32) * SECTOR + fat.len() as u64 + (32 + 1) * SECTOR;
    let mut disk = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)
        .map_err(err)?;
    disk.set_len(disk_size).map_err(err)?;
    let sectors = u32::try_from(disk_size / SECTOR - 1).unwrap_or(u32::MAX);
    gpt::mbr::ProtectiveMBR::with_lb_size(sectors)
        .overwrite_lba0(&mut disk)
        .map_err(err)?;
    let start = {
        let mut gpt = gpt::GptConfig::new()
            .writable(true)
            .initialized(false)
            .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
            .create_from_device(Box::new(&mut disk), None)
            .map_err(err)?;
        gpt.update_partitions(Default::default()).map_err(err)?;
        let id = gpt
            .add_partition("boot", fat.len() as u64, gpt::partition_types::EFI, 0, None)
            .map_err(err)?;
        let start = gpt
            .partitions()
            .get(&id)
            .map(|p| p.first_lba * SECTOR)
            .ok_or_else(|| format!("{}: the new partition is missing", path.display()))?;
        gpt.write().map_err(err)?;
        start
    };
    disk.seek(SeekFrom::Start(start)).map_err(err)?;
    disk.write_all(fat).map_err(err)?;
    File::sync_all(&disk).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuilt_volume_holds_the_same_files_in_little_more_than_their_size() {
        let files: Files = vec![
            (
                "kernel-x86_64".into(),
                (0..700_000u32).map(|i| i as u8).collect(),
            ),
            ("boot.json".into(), b"{}".to_vec()),
            ("efi/boot/bootx64.efi".into(), vec![0xa5; 170_000]),
        ];
        let volume = write_fat(&files).unwrap();
        let payload: usize = files.iter().map(|(_, d)| d.len()).sum();
        assert!(
            volume.len() < payload + (64 << 10),
            "{} bytes for {payload} bytes of files",
            volume.len()
        );
        let mut back = read_fat(volume).unwrap();
        back.sort();
        let mut want = files.clone();
        want.sort();
        assert_eq!(back, want);
    }
}
