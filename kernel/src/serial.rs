//! The serial console (COM1, a 16550 UART) and the `log` backend that writes to it.
//!
//! Everything the image says goes here: operators read it on `-serial stdio`, tests read it from
//! a file. Lines carry the time since boot once the clock is calibrated.

use core::fmt::{self, Write};
use spin::Mutex;
use x86_64::instructions::port::Port;

const COM1: u16 = 0x3f8;

/// The UART; one writer at a time.
pub static SERIAL: Mutex<Serial> = Mutex::new(Serial { base: COM1 });

/// A 16550-compatible UART at an I/O port base.
pub struct Serial {
    base: u16,
}

impl Serial {
    fn out(&mut self, offset: u16, value: u8) {
        let mut port = Port::<u8>::new(self.base + offset);
        // Safety: the COM1 registers are at fixed I/O ports on every PC; writing them changes
        // only the UART's own state.
        unsafe { port.write(value) }
    }

    fn input(&mut self, offset: u16) -> u8 {
        let mut port = Port::<u8>::new(self.base + offset);
        // Safety: reading the line status register has no side effects.
        unsafe { port.read() }
    }

    /// 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init(&mut self) {
        self.out(1, 0x00); // no interrupts
        self.out(3, 0x80); // divisor latch access
        self.out(0, 0x01); // divisor 1: 115200 baud
        self.out(1, 0x00);
        self.out(3, 0x03); // 8 bits, no parity, one stop bit
        self.out(2, 0xc7); // FIFOs on and cleared, 14-byte threshold
        self.out(4, 0x03); // DTR, RTS
    }

    fn put(&mut self, byte: u8) {
        // Wait until the transmit holding register is empty (line status bit 5); bounded so a
        // missing UART cannot hang the image.
        for _ in 0..100_000 {
            if self.input(5) & 0x20 != 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.out(0, byte);
    }
}

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let micros = crate::clock::micros_since_boot();
        let mut serial = SERIAL.lock();
        let _ = writeln!(
            serial,
            "[{:>5}.{:06}] {:<5} {}",
            micros / 1_000_000,
            micros % 1_000_000,
            record.level(),
            record.args()
        );
    }

    fn flush(&self) {}
}

/// Set up the UART and route `log` to it.
pub fn init() {
    SERIAL.lock().init();
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// Write to the console without the logger, e.g. from the panic handler (forcing the lock: a
/// panic while logging must still be heard).
pub fn emergency_write(args: fmt::Arguments) {
    // Safety of the force: only the boot CPU runs code that logs while others run (application
    // processors log once, when they come up, and then halt); if the lock is held, it is most
    // likely held by the code that panicked, which will never run again.
    if SERIAL.is_locked() {
        // Safety: see above; no other holder can resume.
        unsafe { SERIAL.force_unlock() };
    }
    let _ = SERIAL.lock().write_fmt(args);
}
