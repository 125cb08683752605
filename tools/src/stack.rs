// SPDX-License-Identifier: GPL-2.0

//! The user stack of a traced thread stopped at a system call: unwound from its registers and
//! stack memory with the call-frame information of each mapped program and library
//! (`.eh_frame`, which Debian's glibc has where it has no frame pointers), by `framehop`, and
//! symbolized with function names, and source files and lines (inlined frames included) where
//! there is debug information, by `addr2line` (its symbol table otherwise).
//!
//! The files are the ones the process maps, read by the tracer through their paths in
//! `/proc/PID/maps` (it shares the tracee's mount namespace); each is parsed once.

use crate::abi::{kind, Vma, MMSCOPE_VMA_EXEC};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64, UnwinderX86_64};
use framehop::{ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder};
use nix::sys::ptrace;
use nix::unistd::Pid;
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};
use serde::Serialize;
use std::collections::HashMap;
use std::ops::Range;
use std::rc::Rc;
use std::sync::Arc;

/// One frame of a stack, innermost first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Frame {
    /// The code address: the instruction pointer for the first frame, a return address for
    /// the others.
    pub addr: u64,
    /// The function, if it is known: from debug information, or the nearest symbol.
    pub function: Option<String>,
    /// The source file, where there is debug information.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The source line, where there is debug information.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// Whether the compiler inlined this function into the frame after it (they share `addr`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub inlined: bool,
    /// The file mapped at `addr` (the program or a library).
    pub module: Option<String>,
    /// `addr` as an address in that file (what `addr2line -e FILE` takes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_addr: Option<u64>,
}

/// A file a process maps, parsed once: its unwind sections and its symbolizer.
struct ObjectFile {
    /// `.text`, `.eh_frame`, `.eh_frame_hdr`: their addresses in the file and their bytes.
    sections: ExplicitModuleSectionInfo<Arc<[u8]>>,
    /// The `PT_LOAD` segments: (file offset, virtual address).
    loads: Vec<(u64, u64)>,
    /// Functions, files and lines, from the debug information.
    symbols: Option<addr2line::Loader>,
    /// The function symbols (`.symtab`, else `.dynsym`) with their sizes, by address: a
    /// name only for an address inside a function, never the nearest one before it.
    functions: Vec<(u64, u64, String)>,
}

impl ObjectFile {
    fn open(path: &str) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        let file = object::File::parse(&*bytes).ok()?;
        let section = |name: &str| {
            let s = file.section_by_name(name)?;
            let data: Arc<[u8]> = Arc::from(s.data().ok()?);
            Some((s.address()..s.address() + s.size(), data))
        };
        let mut sections = ExplicitModuleSectionInfo::default();
        if let Some((svma, data)) = section(".text") {
            sections.text_svma = Some(svma);
            sections.text = Some(data);
        }
        if let Some((svma, data)) = section(".eh_frame") {
            sections.eh_frame_svma = Some(svma);
            sections.eh_frame = Some(data);
        }
        if let Some((svma, data)) = section(".eh_frame_hdr") {
            sections.eh_frame_hdr_svma = Some(svma);
            sections.eh_frame_hdr = Some(data);
        }
        let loads = file
            .segments()
            .map(|s| (s.file_range().0, s.address()))
            .collect();
        let table = |syms: object::read::SymbolIterator<'_, '_>| {
            syms.filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
                .filter_map(|s| Some((s.address(), s.size(), s.name().ok()?.to_string())))
                .collect::<Vec<_>>()
        };
        // Detached debug symbols (Debian's -dbg packages), found by build id as gdb finds
        // them: they name the functions a stripped library keeps no symbol for.
        let debug = file
            .build_id()
            .ok()
            .flatten()
            .filter(|id| id.len() > 1)
            .map(|id| {
                let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
                format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..])
            })
            .filter(|p| std::path::Path::new(p).is_file());
        let debug_bytes = debug.as_ref().and_then(|p| std::fs::read(p).ok());
        let debug_file = debug_bytes
            .as_deref()
            .and_then(|b| object::File::parse(b).ok());
        let mut functions = debug_file
            .as_ref()
            .map(|d| table(d.symbols()))
            .unwrap_or_default();
        if functions.is_empty() {
            functions = table(file.symbols());
        }
        if functions.is_empty() {
            functions = table(file.dynamic_symbols());
        }
        functions.sort_unstable();
        Some(Self {
            sections,
            loads,
            symbols: addr2line::Loader::new(debug.as_deref().unwrap_or(path)).ok(),
            functions,
        })
    }

    /// The load bias of a mapping of this file at `start` from file offset `offset`: what
    /// is added to an address in the file to get the address in the process.
    fn bias(&self, start: u64, offset: u64) -> Option<u64> {
        // The segment holding `offset`: file offset `off` of it is at `vaddr + off - seg_off`.
        let &(seg_off, vaddr) = self
            .loads
            .iter()
            .filter(|&&(seg_off, _)| seg_off <= offset)
            .max_by_key(|&&(seg_off, _)| seg_off)?;
        Some(start.wrapping_sub(vaddr + (offset - seg_off)))
    }
}

/// An executable file mapping of the process: where, which file, at which offset.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CodeMapping {
    /// Its address range.
    pub range: Range<u64>,
    /// The file offset mapped at its start.
    pub offset: u64,
    /// The file's path, as `/proc/PID/maps` names it.
    pub path: String,
}

/// Unwinds and symbolizes the stacks of the threads of the processes a tracer holds, each
/// with the files of its program (a new one after `execve`).
pub struct Stacks {
    /// How many frames at most.
    depth: usize,
    /// Parsed files, by path (shared by every process the tracer follows).
    files: HashMap<String, Option<Rc<ObjectFile>>>,
    /// Per process: the code mappings the unwinder was built for, and the unwinder.
    procs: HashMap<i32, ProcStacks>,
    /// The frames of each code address already looked up, by file and address in it: a
    /// program's memory calls come from few places.
    symbolized: HashMap<(Rc<str>, u64), Vec<Frame>>,
    /// The stack bytes of the last unwinding, kept for the next.
    buf: Vec<u8>,
}

/// A process's unwinder, which another thread may use too.
pub type SharedUnwinder = Arc<UnwinderX86_64<Arc<[u8]>>>;

/// The code addresses of the stack of registers `(ip, sp, bp)` (innermost first, at most
/// `depth`), unwound by `unwinder` reading the stack's words with `read`.
pub fn unwind<F: FnMut(u64) -> Result<u64, ()>>(
    unwinder: &UnwinderX86_64<Arc<[u8]>>,
    cache: &mut CacheX86_64,
    (ip, sp, bp): (u64, u64, u64),
    depth: usize,
    read: &mut F,
) -> Vec<FrameAddress> {
    let mut addrs = Vec::new();
    let mut frames = unwinder.iter_frames(ip, UnwindRegsX86_64::new(ip, sp, bp), cache, read);
    while let Ok(Some(frame)) = frames.next() {
        addrs.push(frame);
        if addrs.len() >= depth {
            break;
        }
    }
    addrs
}

/// An executable file mapping as a snapshot shows it: start, end, page offset, inode.
type CodeKey = (u64, u64, u64, u64);

/// What a process's unwinding needs: the code mappings it was built for and the unwinder.
struct ProcStacks {
    key: Vec<CodeKey>,
    modules: Vec<Module4>,
    unwinder: SharedUnwinder,
    cache: CacheX86_64,
}

/// How much stack to read at first from the stack pointer up: most call chains' frames.
const STACK_BYTES: usize = 8 << 10;
/// How far up the stack it reads in growing pieces before it reads word by word.
const STACK_MAX: usize = 1 << 20;

impl Stacks {
    /// Stacks of at most `depth` frames.
    pub fn new(depth: usize) -> Self {
        Self {
            depth,
            files: HashMap::new(),
            procs: HashMap::new(),
            symbolized: HashMap::new(),
            buf: Vec::new(),
        }
    }

    /// Forgets process `pid` (it ended or execed).
    pub fn forget(&mut self, pid: i32) {
        self.procs.remove(&pid);
    }

    /// The unwinder of process `pid`, whose VMAs are `vmas` (as thread `tid` sees them),
    /// built again, and the files' paths read from `/proc/TID/maps`, only when the executable
    /// file mappings changed. Shared with [`crate::faults`], which unwinds the stacks the
    /// kernel copies with each page fault.
    pub fn unwinder(&mut self, pid: i32, tid: i32, vmas: &[Vma]) -> SharedUnwinder {
        let key: Vec<CodeKey> = vmas
            .iter()
            .filter(|v| v.kind == kind::FILE && v.flags & MMSCOPE_VMA_EXEC != 0)
            .map(|v| (v.start, v.end, v.pgoff, v.inode))
            .collect();
        match self.procs.get(&pid) {
            Some(p) if p.key == key => Arc::clone(&p.unwinder),
            _ => {
                let names = crate::procfs::names(Some(tid));
                let page = crate::snapshot::page_size();
                let mappings: Vec<CodeMapping> = key
                    .iter()
                    .filter_map(|&(start, end, pgoff, inode)| {
                        Some(CodeMapping {
                            range: start..end,
                            offset: pgoff * page,
                            path: names.get(&(start, inode))?.clone(),
                        })
                    })
                    .collect();
                let built = self.build(key, &mappings);
                let unwinder = Arc::clone(&built.unwinder);
                self.procs.insert(pid, built);
                unwinder
            }
        }
    }

    /// The stack of thread `tid` of process `pid`, stopped, whose VMAs are `vmas`.
    pub fn stack(&mut self, pid: i32, tid: i32, vmas: &[Vma]) -> Vec<Frame> {
        let Ok(regs) = ptrace::getregs(Pid::from_raw(tid)) else {
            return Vec::new();
        };
        self.unwinder(pid, tid, vmas);
        let Some(p) = self.procs.get_mut(&pid) else {
            return Vec::new();
        };
        let (sp, bp, ip) = (regs.rsp, regs.rbp, regs.rip);
        // The stack from the stack pointer up, read a few pages at first and more as the
        // unwinder reaches past them (a deep stack), then word by word; into a buffer kept
        // from call to call, zeroed only as it grows.
        let mut buf = std::mem::take(&mut self.buf);
        if buf.len() < STACK_BYTES {
            buf.resize(STACK_BYTES, 0);
        }
        let mem = std::fs::File::open(format!("/proc/{tid}/mem")).ok();
        let mut valid = fill(mem.as_ref(), sp, &mut buf[..STACK_BYTES]);
        // Whether the stack may go on past what was read (the read was not cut short).
        let mut more = valid == STACK_BYTES;
        let mut read = |addr: u64| -> Result<u64, ()> {
            let at = addr.checked_sub(sp).ok_or(())? as usize;
            while more && at + 8 > valid && valid < STACK_MAX {
                let end = (valid * 2).min(STACK_MAX);
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                let got = fill(mem.as_ref(), sp + valid as u64, &mut buf[valid..end]);
                more = got == end - valid;
                valid += got;
            }
            match buf.get(at..at + 8).filter(|_| at + 8 <= valid) {
                Some(b) => Ok(u64::from_ne_bytes(b.try_into().map_err(|_| ())?)),
                None => read_word(tid, addr),
            }
        };
        let addrs = unwind(
            &p.unwinder,
            &mut p.cache,
            (ip, sp, bp),
            self.depth,
            &mut read,
        );
        self.buf = buf;
        self.frames(pid, &addrs)
    }

    /// The frames of the code addresses `addrs` of process `pid` (an unwinding's, innermost
    /// first), symbolized with the files it maps now, at most the depth asked for.
    pub fn frames(&mut self, pid: i32, addrs: &[FrameAddress]) -> Vec<Frame> {
        let Some(p) = self.procs.get(&pid) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &frame in addrs {
            let (addr, lookup) = match frame {
                FrameAddress::InstructionPointer(a) => (a, a),
                // The call instruction, before the return address.
                FrameAddress::ReturnAddress(a) => (a.get(), a.get() - 1),
            };
            out.extend(symbolize_cached(
                &mut self.symbolized,
                &p.modules,
                addr,
                lookup,
            ));
            if out.len() >= self.depth {
                out.truncate(self.depth);
                break;
            }
        }
        out
    }

    /// How many frames at most.
    pub fn depth(&self) -> usize {
        self.depth
    }

    fn build(&mut self, key: Vec<CodeKey>, mappings: &[CodeMapping]) -> ProcStacks {
        let mut unwinder = UnwinderX86_64::new();
        let mut modules = Vec::new();
        for m in mappings {
            let file = self
                .files
                .entry(m.path.clone())
                .or_insert_with(|| ObjectFile::open(&m.path).map(Rc::new))
                .clone();
            let Some(file) = file else {
                continue;
            };
            let Some(bias) = file.bias(m.range.start, m.offset) else {
                continue;
            };
            unwinder.add_module(Module::new(
                m.path.clone(),
                m.range.clone(),
                bias,
                file.sections.clone(),
            ));
            modules.push((m.range.clone(), bias, file, Rc::from(m.path.as_str())));
        }
        ProcStacks {
            key,
            modules,
            unwinder: Arc::new(unwinder),
            cache: CacheX86_64::new(),
        }
    }
}

/// [`symbolize`], remembered by file and address in it.
fn symbolize_cached(
    cache: &mut HashMap<(Rc<str>, u64), Vec<Frame>>,
    modules: &[Module4],
    addr: u64,
    lookup: u64,
) -> Vec<Frame> {
    let Some((_, bias, _, path)) = modules.iter().find(|(r, ..)| r.contains(&lookup)) else {
        return symbolize(modules, addr, lookup);
    };
    // By the address in the file: another process may map the same file elsewhere.
    let key = (Rc::clone(path), lookup.wrapping_sub(*bias));
    let mut frames = match cache.get(&key) {
        Some(frames) => frames.clone(),
        None => {
            let frames = symbolize(modules, addr, lookup);
            cache.insert(key, frames.clone());
            frames
        }
    };
    for f in &mut frames {
        f.addr = addr;
        f.module_addr = Some(addr.wrapping_sub(*bias));
    }
    frames
}

/// A module of a process: its address range, load bias, parsed file and path.
type Module4 = (Range<u64>, u64, Rc<ObjectFile>, Rc<str>);

/// The frames at code address `addr` (`lookup` is the address inside the call instruction for
/// a return address): the inlined ones first, each with its function, file and line where the
/// debug information has them, else the nearest symbol's name.
fn symbolize(modules: &[Module4], addr: u64, lookup: u64) -> Vec<Frame> {
    let Some((_, bias, file, path)) = modules.iter().find(|(r, ..)| r.contains(&lookup)) else {
        return vec![Frame {
            addr,
            ..Default::default()
        }];
    };
    let module = Some(path.to_string());
    let probe = lookup.wrapping_sub(*bias);
    let mut out = Vec::new();
    if let Some(symbols) = &file.symbols {
        if let Ok(mut frames) = symbols.find_frames(probe) {
            while let Ok(Some(f)) = frames.next() {
                let function = f
                    .function
                    .as_ref()
                    .and_then(|n| n.demangle().ok().map(|n| n.into_owned()));
                out.push(Frame {
                    addr,
                    function,
                    file: f.location.as_ref().and_then(|l| l.file.map(str::to_string)),
                    line: f.location.as_ref().and_then(|l| l.line),
                    inlined: true,
                    module: module.clone(),
                    module_addr: None,
                });
            }
        }
    }
    if out.iter().all(|f| f.function.is_none()) {
        out.clear();
        let at = file
            .functions
            .partition_point(|&(start, ..)| start <= probe);
        let function = at
            .checked_sub(1)
            .and_then(|i| file.functions.get(i))
            .filter(|&&(start, size, _)| probe < start + size)
            .map(|(_, _, name)| addr2line::demangle_auto(name.into(), None).into_owned());
        out.push(Frame {
            addr,
            function,
            module: module.clone(),
            ..Default::default()
        });
    }
    // The last of an address's frames is the function the code is in; the others were
    // inlined into it.
    if let Some(last) = out.last_mut() {
        last.inlined = false;
    }
    for f in &mut out {
        f.module_addr = Some(addr.wrapping_sub(*bias));
    }
    out
}

/// Reads the tracee's memory from `addr` into `buf` through its `/proc/TID/mem`: how many
/// bytes it could (fewer where the mapping ends).
fn fill(mem: Option<&std::fs::File>, addr: u64, buf: &mut [u8]) -> usize {
    use std::os::unix::fs::FileExt;
    let Some(mem) = mem else {
        return 0;
    };
    let mut got = 0;
    while got < buf.len() {
        match mem.read_at(&mut buf[got..], addr + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    got
}

/// One word of the tracee's memory.
fn read_word(tid: i32, addr: u64) -> Result<u64, ()> {
    ptrace::read(Pid::from_raw(tid), addr as ptrace::AddressType)
        .map(|w| w as u64)
        .map_err(|_| ())
}
