//! Generators for tests: the operating system's, and a scripted one for exact expectations.

use core::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng, UnwrapErr};

/// The operating system's generator, as production callers use it.
pub(crate) fn os() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// Replays the given bytes in order, then zeros. Claims to be cryptographic so that it can drive the
/// functions under test; it is only ever used in tests.
pub(crate) struct ScriptedRng {
    bytes: Vec<u8>,
    pos: usize,
}

impl ScriptedRng {
    pub(crate) fn bytes(bytes: &[u8]) -> Self {
        ScriptedRng { bytes: bytes.to_vec(), pos: 0 }
    }

    /// Each value is produced by one `next_u32` (little-endian, as `rand_core` assembles words).
    pub(crate) fn u32s(values: &[u32]) -> Self {
        ScriptedRng::bytes(&values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
    }
}

impl TryRng for ScriptedRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut word = [0u8; 4];
        self.try_fill_bytes(&mut word)?;
        Ok(u32::from_le_bytes(word))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut word = [0u8; 8];
        self.try_fill_bytes(&mut word)?;
        Ok(u64::from_le_bytes(word))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for byte in dst.iter_mut() {
            *byte = self.bytes.get(self.pos).copied().unwrap_or(0);
            self.pos += 1;
        }
        Ok(())
    }
}

impl TryCryptoRng for ScriptedRng {}
