//! The facts `kfunc` needs from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`): the id of a function and where a member of
//! a struct lies, anonymous unions and structs included.
//!
//! aya-obj parses BTF too, but keeps types and members to itself (it only
//! answers "id by name"); this reads just the type section, by the format
//! in the kernel's `Documentation/bpf/btf.rst`, and the tests check it
//! against the running kernel.
use std::io;

/// The running kernel's BTF.
pub(super) const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;
/// `struct btf_type`: name_off, info, size/type.
const TYPE_LEN: usize = 12;
/// `struct btf_member`: name_off, type, offset.
const MEMBER_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("not BTF in this machine's byte order")]
    Magic,
    #[error("BTF cut short or inconsistent at byte {0}")]
    Truncated(usize),
    #[error("unknown BTF kind {kind} (type {id})")]
    UnknownKind { kind: u32, id: u32 },
}

/// Where a struct member lies, in bits from the start of the struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemberBits {
    pub offset: u32,
    pub size: u32,
}

/// One type, decoded from its record.
struct Type {
    kind: u32,
    kind_flag: bool,
    vlen: usize,
    name_off: u32,
    /// `size` or `type`, by kind.
    size_or_type: u32,
    /// Offset of the kind's trailing data in `KernelBtf::data`.
    extra: usize,
}

/// A parsed BTF blob: the file as read, and where each type's record
/// starts in it (decoded on demand: the kernel's has over 100,000 types,
/// and the daemon keeps none of this after loading its programs).
pub(super) struct KernelBtf {
    data: Vec<u8>,
    /// The string section, as a range of `data`.
    strings: std::ops::Range<usize>,
    /// Offset in `data` of the record of type `id`, at index `id - 1`
    /// (type 0 is `void`).
    types: Vec<u32>,
}

impl KernelBtf {
    /// The running kernel's BTF.
    pub(super) fn vmlinux() -> Result<KernelBtf, BtfError> {
        let data = std::fs::read(VMLINUX).map_err(|source| BtfError::Read {
            path: VMLINUX.to_string(),
            source,
        })?;
        KernelBtf::parse(data)
    }

    /// Parses a BTF blob (header, type section, string section).
    pub(super) fn parse(data: Vec<u8>) -> Result<KernelBtf, BtfError> {
        let magic = data
            .get(..2)
            .map(|b| u16::from_ne_bytes([b[0], b[1]]))
            .ok_or(BtfError::Truncated(0))?;
        if magic != MAGIC {
            return Err(BtfError::Magic);
        }
        // btf_header: magic, version, flags, hdr_len, then type_off,
        // type_len, str_off, str_len (offsets from the header's end).
        let hdr_len = u32_at(&data, 4)? as usize;
        let section = |off_at: usize| -> Result<std::ops::Range<usize>, BtfError> {
            let start = hdr_len + u32_at(&data, off_at)? as usize;
            let end = start + u32_at(&data, off_at + 4)? as usize;
            if end > data.len() {
                return Err(BtfError::Truncated(start));
            }
            Ok(start..end)
        };
        let type_section = section(8)?;
        let strings = section(16)?;
        let mut types = Vec::new();
        let mut at = type_section.start;
        while at < type_section.end {
            let offset = u32::try_from(at).map_err(|_| BtfError::Truncated(at))?;
            let ty = decode(&data, at)?;
            let extra_len = match ty.kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * ty.vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * ty.vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                kind => {
                    return Err(BtfError::UnknownKind {
                        kind,
                        id: types.len() as u32 + 1,
                    });
                }
            };
            at = ty.extra + extra_len;
            if at > type_section.end {
                return Err(BtfError::Truncated(at));
            }
            types.push(offset);
        }
        Ok(KernelBtf {
            data,
            strings,
            types,
        })
    }

    /// The id of the function `name`.
    pub(super) fn func_id(&self, name: &str) -> Option<u32> {
        self.find(KIND_FUNC, name)
    }

    /// Where `member` of `struct name` lies, looking into anonymous
    /// structs and unions (as C does).
    pub(super) fn member_bits(&self, name: &str, member: &str) -> Option<MemberBits> {
        let id = self.find(KIND_STRUCT, name)?;
        self.member_in(id, member, 0)
    }

    fn member_in(&self, id: u32, member: &str, base: u32) -> Option<MemberBits> {
        let ty = self.ty(id)?;
        if ty.kind != KIND_STRUCT && ty.kind != KIND_UNION {
            return None;
        }
        (0..ty.vlen).find_map(|i| {
            let at = ty.extra + i * MEMBER_LEN;
            let name_off = u32_at(&self.data, at).ok()?;
            let member_type = u32_at(&self.data, at + 4).ok()?;
            let offset = u32_at(&self.data, at + 8).ok()?;
            // With kind_flag the offset word holds the bitfield size in
            // its top byte.
            let (bit, bitfield) = if ty.kind_flag {
                (offset & 0x00ff_ffff, offset >> 24)
            } else {
                (offset, 0)
            };
            let member_name = self.name(name_off)?;
            if member_name == member {
                let size = match bitfield {
                    0 => self.size_of(member_type)? * 8,
                    bits => bits,
                };
                return Some(MemberBits {
                    offset: base + bit,
                    size,
                });
            }
            if member_name.is_empty() {
                return self.member_in(self.resolve(member_type)?, member, base + bit);
            }
            None
        })
    }

    /// The size in bytes of a sized type (after modifiers and typedefs).
    fn size_of(&self, id: u32) -> Option<u32> {
        let ty = self.ty(self.resolve(id)?)?;
        match ty.kind {
            KIND_INT | KIND_STRUCT | KIND_UNION | KIND_ENUM | KIND_ENUM64 => Some(ty.size_or_type),
            // btf_array: element type, index type, element count.
            KIND_ARRAY => {
                let element = u32_at(&self.data, ty.extra).ok()?;
                let count = u32_at(&self.data, ty.extra + 8).ok()?;
                self.size_of(element)?.checked_mul(count)
            }
            _ => None,
        }
    }

    /// `id` with typedefs, `const`, `volatile` and type tags looked through.
    fn resolve(&self, mut id: u32) -> Option<u32> {
        // A chain of modifiers is short; the bound only stops a cycle in a
        // corrupt blob.
        for _ in 0..32 {
            match self.ty(id)?.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_TYPE_TAG => {
                    id = self.ty(id)?.size_or_type;
                }
                _ => return Some(id),
            }
        }
        None
    }

    fn find(&self, kind: u32, name: &str) -> Option<u32> {
        (1..=self.types.len() as u32).find(|&id| {
            self.ty(id)
                .is_some_and(|t| t.kind == kind && self.name(t.name_off) == Some(name))
        })
    }

    fn ty(&self, id: u32) -> Option<Type> {
        let at = *self.types.get((id as usize).checked_sub(1)?)?;
        decode(&self.data, at as usize).ok()
    }

    fn name(&self, off: u32) -> Option<&str> {
        let rest = self
            .data
            .get(self.strings.start + off as usize..self.strings.end)?;
        let end = rest.iter().position(|&b| b == 0)?;
        std::str::from_utf8(&rest[..end]).ok()
    }
}

/// The type record at `at` in `data`.
fn decode(data: &[u8], at: usize) -> Result<Type, BtfError> {
    let info = u32_at(data, at + 4)?;
    Ok(Type {
        kind: (info >> 24) & 0x1f,
        kind_flag: info >> 31 == 1,
        vlen: (info & 0xffff) as usize,
        name_off: u32_at(data, at)?,
        size_or_type: u32_at(data, at + 8)?,
        extra: at + TYPE_LEN,
    })
}

fn u32_at(data: &[u8], at: usize) -> Result<u32, BtfError> {
    data.get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or(BtfError::Truncated(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The running kernel (every machine this project targets has BTF).
    fn vmlinux() -> KernelBtf {
        KernelBtf::vmlinux().expect("this kernel's BTF")
    }

    #[test]
    fn finds_a_kfunc() {
        let btf = vmlinux();
        let id = btf.func_id("bpf_cast_to_kern_ctx").expect("the kfunc");
        assert_eq!(btf.ty(id).map(|t| t.kind), Some(KIND_FUNC));
        assert_eq!(btf.func_id("no_such_function_in_any_kernel"), None);
    }

    /// `len` is a plain member of `sk_buff`; `ip_summed` a 2-bit field two
    /// anonymous levels down, in the byte the kernel marks with
    /// `__pkt_type_offset` (a zero-length member at the same place).
    #[test]
    fn finds_members_through_anonymous_unions() {
        let btf = vmlinux();
        let len = btf.member_bits("sk_buff", "len").expect("sk_buff.len");
        assert_eq!(len.size, 32);
        assert_eq!(len.offset % 32, 0);
        let summed = btf
            .member_bits("sk_buff", "ip_summed")
            .expect("sk_buff.ip_summed");
        assert_eq!(summed.size, 2);
        let marker = btf
            .member_bits("sk_buff", "__pkt_type_offset")
            .expect("sk_buff.__pkt_type_offset");
        assert_eq!(summed.offset / 8, marker.offset / 8);
        assert_eq!(btf.member_bits("sk_buff", "no_such_member"), None);
        assert_eq!(btf.member_bits("no_such_struct", "len"), None);
    }

    #[test]
    fn refuses_what_is_not_btf() {
        assert!(matches!(
            KernelBtf::parse(vec![0u8; 24]),
            Err(BtfError::Magic)
        ));
        let mut cut = std::fs::read(VMLINUX).expect("this kernel's BTF");
        cut.truncate(100);
        assert!(matches!(KernelBtf::parse(cut), Err(BtfError::Truncated(_))));
    }
}
