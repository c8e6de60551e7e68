//! Turns the rows gimli evaluates from each FDE into [`UnwindRow`]s: the
//! few CFA and rbp rules the in-kernel unwinder follows, everything else
//! marked unsupported.

use gimli::{
    BaseAddresses, CfaRule, CieOrFde, EndianSlice, LittleEndian, Operation, Reader, RegisterRule,
    UnwindContext, UnwindSection, UnwindTableRow, X86_64,
};
use profiler_common::{UnwindRow, cfa, rbp_rule};

use crate::source::Segments;
use crate::{TableStats, UnsupportedCauses};

pub(crate) type Slice<'a> = EndianSlice<'a, LittleEndian>;

/// Which section FDEs are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    EhFrame,
    DebugFrame,
}

/// One FDE's rows, in file offsets: `rows` cover `[start, end)`, the first
/// at `start`, strictly increasing.
#[derive(Clone, Debug)]
pub(crate) struct Fde {
    pub(crate) start: u32,
    pub(crate) end: u32,
    /// Offset of the FDE in its section: the tie-break between duplicates.
    pub(crate) section_offset: usize,
    pub(crate) rows: Vec<UnwindRow>,
}

/// Reads every FDE of `section`. FDEs outside the executable segments
/// (left at address 0 by the linker for discarded sections), or that gimli
/// cannot evaluate, are skipped and counted; the walk through the section
/// itself failing is an error, since nothing after that point can be found.
pub(crate) fn read_fdes<'a, S>(
    section: &S,
    bases: &BaseAddresses,
    segments: &Segments,
    origin: Origin,
    stats: &mut TableStats,
) -> Result<Vec<Fde>, crate::Error>
where
    S: UnwindSection<Slice<'a>>,
{
    let section_name = match origin {
        Origin::EhFrame => ".eh_frame",
        Origin::DebugFrame => ".debug_frame",
    };
    let cfi_error = |source| crate::Error::Cfi {
        section: section_name,
        source,
    };
    let mut ctx = UnwindContext::new();
    let mut fdes = Vec::new();
    let mut entries = section.entries(bases);
    while let Some(entry) = entries.next().map_err(cfi_error)? {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        stats.fdes += 1;
        // Caching CIEs by offset (thousands of FDEs share a few) made no
        // difference measurable above noise for libc or python3.
        let Ok(fde) =
            partial.parse(|section, bases, offset| section.cie_from_offset(bases, offset))
        else {
            stats.fdes_skipped += 1;
            continue;
        };
        if fde.len() == 0 {
            stats.fdes_skipped += 1;
            continue;
        }
        match convert_fde(section, bases, &mut ctx, &fde, segments, stats)? {
            Some((start, end, rows)) => fdes.push(Fde {
                start,
                end,
                section_offset: fde.offset(),
                rows,
            }),
            None => stats.fdes_skipped += 1,
        }
    }
    Ok(fdes)
}

/// The file offset of `vaddr` given its segment's bias; an error when it
/// does not fit the table's 32 bits.
fn file_offset(vaddr: u64, bias: u64) -> Result<u32, crate::Error> {
    let offset = vaddr - bias;
    u32::try_from(offset).map_err(|_| crate::Error::OffsetTooLarge { vaddr, offset })
}

/// One FDE's `(start, end, rows)`, or `None` when it is outside the
/// executable segments or gimli cannot evaluate it. Every address takes
/// the bias of the segment holding the FDE's start, so that one function
/// never straddles two biases.
fn convert_fde<'a, S>(
    section: &S,
    bases: &BaseAddresses,
    ctx: &mut UnwindContext<usize>,
    fde: &gimli::FrameDescriptionEntry<Slice<'a>>,
    segments: &Segments,
    stats: &mut TableStats,
) -> Result<Option<(u32, u32, Vec<UnwindRow>)>, crate::Error>
where
    S: UnwindSection<Slice<'a>>,
{
    let Some(bias) = segments.bias_of(fde.initial_address()) else {
        return Ok(None);
    };
    let start = file_offset(fde.initial_address(), bias)?;
    let end = file_offset(fde.end_address(), bias)?;
    let cie = fde.cie();
    let context = RowContext {
        signal: fde.is_signal_trampoline(),
        ra_column: cie.return_address_register() == X86_64::RA,
        encoding: cie.encoding(),
    };
    let mut rows = Vec::new();
    let Ok(mut table) = fde.rows(section, bases, ctx) else {
        return Ok(None);
    };
    loop {
        let row = match table.next_row() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(_) => return Ok(None),
        };
        if row.start_address() >= row.end_address() {
            continue;
        }
        let pc = file_offset(row.start_address(), bias)?;
        let (kind, cfa_offset, rbp_offset) = convert_row(row, section, &context, stats);
        stats.rows_before_merge += 1;
        rows.push(UnwindRow {
            pc,
            cfa_offset,
            kind,
            rbp_offset,
        });
    }
    Ok(Some((start, end, rows)))
}

struct RowContext {
    /// The CIE has the 'S' augmentation (glibc's `__restore_rt`).
    signal: bool,
    /// The CIE's return address column is rip's.
    ra_column: bool,
    encoding: gimli::Encoding,
}

/// `(kind, cfa_offset, rbp_offset)` of one row. Rows the kernel cannot use
/// or that end the walk (`END`, `SIGNAL`, `UNSUPPORTED`) carry no offsets,
/// so that neighbours of the same kind merge.
fn convert_row<'a, S>(
    row: &UnwindTableRow<usize>,
    section: &S,
    context: &RowContext,
    stats: &mut TableStats,
) -> (u8, u16, i8)
where
    S: UnwindSection<Slice<'a>>,
{
    let unsupported = (UnwindRow::make_kind(cfa::UNSUPPORTED, rbp_rule::SAME), 0, 0);
    if context.signal {
        return (UnwindRow::make_kind(cfa::SIGNAL, rbp_rule::SAME), 0, 0);
    }
    match (context.ra_column, row.register(X86_64::RA)) {
        (true, Some(RegisterRule::Offset(-8))) => {}
        (true, Some(RegisterRule::Undefined)) => {
            return (UnwindRow::make_kind(cfa::END, rbp_rule::SAME), 0, 0);
        }
        _ => {
            stats.unsupported.return_address += 1;
            return unsupported;
        }
    }
    let (cfa_kind, cfa_offset, plt_threshold) = match cfa_rule(row.cfa(), section, context) {
        Ok(rule) => rule,
        Err(cause) => {
            cause.count(&mut stats.unsupported);
            return unsupported;
        }
    };
    let (rbp_kind, rbp_offset) = match row.register(X86_64::RBP) {
        None | Some(RegisterRule::SameValue) | Some(RegisterRule::Undefined) => (rbp_rule::SAME, 0),
        Some(RegisterRule::Offset(n)) if n % 8 == 0 && i8::try_from(n / 8).is_ok() => {
            (rbp_rule::AT_CFA, (n / 8) as i8)
        }
        Some(_) => {
            stats.unsupported.rbp += 1;
            (rbp_rule::UNSUPPORTED, 0)
        }
    };
    if let Some(threshold) = plt_threshold {
        // The PLT rule keeps its threshold where an rbp offset would go.
        if rbp_kind != rbp_rule::SAME {
            stats.unsupported.rbp += 1;
            return unsupported;
        }
        return (
            UnwindRow::make_kind(cfa_kind, rbp_kind),
            cfa_offset,
            threshold,
        );
    }
    (
        UnwindRow::make_kind(cfa_kind, rbp_kind),
        cfa_offset,
        rbp_offset,
    )
}

/// Why a CFA rule is unsupported.
enum Cause {
    Register,
    Expression,
    Offset,
}

impl Cause {
    fn count(self, counts: &mut UnsupportedCauses) {
        match self {
            Cause::Register => counts.cfa_register += 1,
            Cause::Expression => counts.cfa_expression += 1,
            Cause::Offset => counts.cfa_offset += 1,
        }
    }
}

/// `(cfa kind, cfa_offset, PLT threshold)`.
fn cfa_rule<'a, S>(
    rule: &CfaRule<usize>,
    section: &S,
    context: &RowContext,
) -> Result<(u8, u16, Option<i8>), Cause>
where
    S: UnwindSection<Slice<'a>>,
{
    match *rule {
        CfaRule::RegisterAndOffset { register, offset } => {
            let kind = match register {
                X86_64::RSP => cfa::RSP,
                X86_64::RBP => cfa::RBP,
                _ => return Err(Cause::Register),
            };
            if let Ok(offset) = u16::try_from(offset) {
                return Ok((kind, offset, None));
            }
            // A frame over 64 KiB (large arrays on the stack: rustc has
            // hundreds); its size is a multiple of 8, kept in 8-byte words.
            if kind == cfa::RSP && offset % 8 == 0 {
                let words = u16::try_from(offset / 8).map_err(|_| Cause::Offset)?;
                return Ok((cfa::RSP_WORDS, words, None));
            }
            Err(Cause::Offset)
        }
        CfaRule::Expression(ref expression) => {
            let expression = expression.get(section).map_err(|_| Cause::Expression)?;
            let mut ops = Vec::new();
            let mut iter = expression.operations(context.encoding);
            loop {
                match iter.next() {
                    Ok(Some(_)) if ops.len() == PLT_OPS => return Err(Cause::Expression),
                    Ok(Some(op)) => ops.push(op),
                    Ok(None) => break,
                    Err(_) => return Err(Cause::Expression),
                }
            }
            expression_rule(&ops)
        }
    }
}

/// Operations in GNU ld's `.plt` expression.
const PLT_OPS: usize = 9;

/// The DWARF expressions the kernel knows, by shape.
fn expression_rule<R: Reader>(ops: &[Operation<R>]) -> Result<(u8, u16, Option<i8>), Cause> {
    use Operation::{And, Deref, Ge, Plus, RegisterOffset, Shl, UnsignedConstant};
    match ops {
        // `breg7 N; breg16 0; lit15; and; lit11; ge; lit3; shl; plus`: rsp + N,
        // plus 8 once the stub has pushed its index (rip & 15 >= 11).
        [
            RegisterOffset {
                register: X86_64::RSP,
                offset,
                ..
            },
            RegisterOffset {
                register: X86_64::RA,
                offset: 0,
                ..
            },
            UnsignedConstant { value: 15 },
            And,
            UnsignedConstant { value: threshold },
            Ge,
            UnsignedConstant { value: 3 },
            Shl,
            Plus,
        ] if *threshold <= 15 => {
            let offset = u16::try_from(*offset).map_err(|_| Cause::Offset)?;
            Ok((cfa::PLT, offset, Some(*threshold as i8)))
        }
        // `bregN off; deref`: the CFA was saved on the stack (gcc's realigned
        // `main` keeps it below rbp). The offset is stored as an i16.
        [
            RegisterOffset {
                register, offset, ..
            },
            Deref {
                size: 8,
                space: false,
                ..
            },
        ] => {
            let kind = match *register {
                X86_64::RSP => cfa::DEREF_RSP,
                X86_64::RBP => cfa::DEREF_RBP,
                _ => return Err(Cause::Register),
            };
            let offset = i16::try_from(*offset).map_err(|_| Cause::Offset)?;
            Ok((kind, offset as u16, None))
        }
        _ => Err(Cause::Expression),
    }
}
