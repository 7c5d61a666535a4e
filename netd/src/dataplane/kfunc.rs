//! Binds the programs' read of `skb->ip_summed` to the running kernel
//! before the object is loaded: the placeholder sequence and why it exists
//! are documented with [`netd_common::ip_summed`].
//!
//! The rewrite needs the id of `bpf_cast_to_kern_ctx` in the kernel's BTF
//! and the byte and bit of `sk_buff.ip_summed` (which move with the
//! kernel's build). Without them (no BTF, a kernel before 6.3, a layout
//! this code does not expect), or when the kernel refuses the bound
//! programs (kfunc calls need the JIT), the object is loaded as built: the
//! programs then take the checksum helpers for every translated packet,
//! correct and about 40 ns slower per helper.
use object::{Object, ObjectSection, SectionKind};

use super::kernel_btf::KernelBtf;

/// The kfunc the placeholder becomes a call of.
const KERN_CTX_KFUNC: &str = "bpf_cast_to_kern_ctx";
/// eBPF instructions are 8 bytes: opcode, registers (dst low nibble, src
/// high), 16-bit offset, 32-bit immediate, little-endian here.
const INSN: usize = 8;
/// The placeholder as the object has it (see `netd_common::ip_summed`).
const PLACEHOLDER: [[u8; 4]; 4] = [
    [0xb7, 0x00, 0x00, 0x00], // r0 = MARKER (mov64 imm)
    [0xbf, 0x00, 0x00, 0x00], // r0 = r0 (mov64 reg)
    [0x77, 0x00, 0x00, 0x00], // r0 >>= 0 (rsh64 imm)
    [0x57, 0x00, 0x00, 0x00], // r0 &= 3 (and64 imm)
];
/// `BPF_JMP | BPF_CALL` with `src_reg = BPF_PSEUDO_KFUNC_CALL` (2).
const KFUNC_CALL: [u8; 2] = [0x85, 0x20];
/// `BPF_LDX | BPF_MEM | BPF_B`, r0 from r0.
const LOAD_BYTE: [u8; 2] = [0x71, 0x00];

/// What the placeholder becomes on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Binding {
    /// BTF id of `bpf_cast_to_kern_ctx`.
    kfunc: u32,
    /// Byte of `sk_buff` that holds `ip_summed`.
    byte: i16,
    /// Its first bit in that byte.
    shift: u8,
}

impl Binding {
    /// From the kernel's BTF, or why not.
    pub(super) fn from_btf(btf: &KernelBtf) -> Result<Binding, String> {
        let kfunc = btf
            .func_id(KERN_CTX_KFUNC)
            .ok_or_else(|| format!("the kernel has no {KERN_CTX_KFUNC} (Linux >= 6.3)"))?;
        let bits = btf
            .member_bits("sk_buff", "ip_summed")
            .ok_or("the kernel's sk_buff has no ip_summed")?;
        // The shift below assumes a little-endian bitfield layout, and the
        // read assumes the two bits share a byte.
        let shift = (bits.offset % 8) as u8;
        if cfg!(target_endian = "big") || bits.size != 2 || shift > 6 {
            return Err(format!(
                "sk_buff.ip_summed is {} bits at bit {}: not the expected layout",
                bits.size, bits.offset
            ));
        }
        let byte = i16::try_from(bits.offset / 8)
            .map_err(|_| format!("sk_buff.ip_summed at byte {}", bits.offset / 8))?;
        Ok(Binding { kfunc, byte, shift })
    }

    /// The running kernel's binding, or why there is none.
    pub(super) fn running_kernel() -> Result<Binding, String> {
        let btf = KernelBtf::vmlinux().map_err(|e| e.to_string())?;
        Binding::from_btf(&btf)
    }
}

/// An object file in memory aligned for the ELF parser (aya's `load` reads
/// the headers in place).
pub(super) struct AlignedObject {
    words: Vec<u64>,
    len: usize,
}

impl AlignedObject {
    fn copy(object: &[u8]) -> AlignedObject {
        let mut copy = AlignedObject {
            words: vec![0; object.len().div_ceil(8)],
            len: object.len(),
        };
        copy.bytes_mut().copy_from_slice(object);
        copy
    }

    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: `words` owns at least `len` initialised bytes (see
        // `copy`), and u8 has no alignment requirement.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// `object` bound to the running kernel, or `None` if it cannot be (with a
/// warning, since translated packets then cost more): load it as built.
pub(super) fn for_running_kernel(object: &[u8]) -> Option<AlignedObject> {
    let unbound = |why: &str| {
        tracing::warn!(
            "the programs cannot read a packet's checksum state on this kernel ({why}): \
             NAT updates L4 checksums through the kernel's helpers, which is slower"
        );
        None
    };
    let binding = match Binding::running_kernel() {
        Ok(binding) => binding,
        Err(why) => return unbound(&why),
    };
    match bind(object, binding) {
        Ok((_, 0)) => unbound("the object has no placeholder to bind"),
        Ok((bound, sites)) => {
            tracing::debug!(?binding, sites, "bound the checksum-state read");
            Some(bound)
        }
        Err(why) => unbound(&why),
    }
}

/// Hands the memory binding used back to the system. Binding reads the
/// kernel's BTF (several MiB) and copies the object, all freed once the
/// programs are loaded; glibc keeps freed memory of its per-thread arenas
/// for later allocations, which a daemon that allocates little after its
/// start never makes, so without this its resident size stays about
/// 14 MiB larger for good.
pub(super) fn release_memory() {
    // SAFETY: `malloc_trim` only returns free memory to the kernel.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A copy of `object` with every placeholder rewritten for `binding`.
/// Returns the copy and how many placeholders it rewrote.
fn bind(object: &[u8], binding: Binding) -> Result<(AlignedObject, usize), String> {
    let texts = text_ranges(object)?;
    let mut copy = AlignedObject::copy(object);
    let bytes = copy.bytes_mut();
    let mut bound = 0;
    for (start, len) in texts {
        let text = &mut bytes[start..start + len];
        let mut at = 0;
        while at + PLACEHOLDER.len() * INSN <= text.len() {
            if is_placeholder(&text[at..]) {
                rewrite(&mut text[at..], binding);
                bound += 1;
                at += PLACEHOLDER.len() * INSN;
            } else {
                at += INSN;
            }
        }
    }
    Ok((copy, bound))
}

/// File offset and length of each executable section.
fn text_ranges(object: &[u8]) -> Result<Vec<(usize, usize)>, String> {
    let file = object::File::parse(object).map_err(|e| format!("parse the object: {e}"))?;
    file.sections()
        .filter(|s| s.kind() == SectionKind::Text)
        .filter_map(|s| s.file_range())
        .map(|(start, len)| {
            let (start, len) = (start as usize, len as usize);
            if start.checked_add(len).is_none_or(|end| end > object.len()) {
                return Err(format!(
                    "a text section at {start}+{len} is outside the object"
                ));
            }
            Ok((start, len))
        })
        .collect()
}

fn is_placeholder(insns: &[u8]) -> bool {
    let marker = netd_common::ip_summed::MARKER.to_le_bytes();
    PLACEHOLDER.iter().enumerate().all(|(i, head)| {
        let insn = &insns[i * INSN..(i + 1) * INSN];
        let imm: [u8; 4] = match i {
            0 => marker,
            3 => 3u32.to_le_bytes(),
            _ => [0; 4],
        };
        insn[..4] == head[..] && insn[4..] == imm[..]
    })
}

fn rewrite(insns: &mut [u8], b: Binding) {
    let (call, rest) = insns.split_at_mut(INSN);
    call[..2].copy_from_slice(&KFUNC_CALL);
    call[4..8].copy_from_slice(&b.kfunc.to_le_bytes());
    let (load, rest) = rest.split_at_mut(INSN);
    load[..2].copy_from_slice(&LOAD_BYTE);
    load[2..4].copy_from_slice(&b.byte.to_le_bytes());
    rest[4..8].copy_from_slice(&u32::from(b.shift).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `Dataplane::load` loads first here is the bound object.
    #[test]
    fn the_running_kernel_gets_the_bound_object() {
        let object = super::super::OBJECT;
        let binding = Binding::running_kernel().expect("a binding for this kernel");
        let (expected, _) = bind(object, binding).expect("bind");
        let loaded = for_running_kernel(object).expect("bound");
        assert_eq!(loaded.bytes(), expected.bytes());
        assert_ne!(loaded.bytes(), object);
    }

    /// The object netd loads has the placeholder (each inlined copy of the
    /// read), and binding rewrites all of them into the call and the load
    /// and leaves every other byte alone.
    #[test]
    fn binding_rewrites_every_placeholder_and_nothing_else() {
        let object = super::super::OBJECT;
        let binding = Binding {
            kfunc: 0x1234,
            byte: 0x80,
            shift: 5,
        };
        let (bound, count) = bind(object, binding).expect("bind");
        assert!(count > 0, "no placeholder in the object");
        let bound = bound.bytes();
        assert_eq!(bound.len(), object.len());
        let differing: Vec<usize> = (0..object.len())
            .filter(|&i| bound[i] != object[i])
            .collect();
        // Per placeholder at most: the call's opcode, registers and
        // immediate (6 bytes), the load's opcode and offset (3), the
        // shift's immediate (4).
        assert!(differing.len() <= count * 13, "{differing:?}");
        let call = [0x85, 0x20, 0, 0, 0x34, 0x12, 0, 0];
        let load = [0x71, 0x00, 0x80, 0, 0, 0, 0, 0];
        let shift = [0x77, 0x00, 0, 0, 5, 0, 0, 0];
        let found = bound
            .windows(24)
            .filter(|w| w[..8] == call && w[8..16] == load && w[16..24] == shift)
            .count();
        assert_eq!(found, count);
        let (again, none) = bind(bound, binding).expect("bind again");
        assert_eq!(none, 0);
        assert_eq!(again.bytes(), bound);
    }
}
