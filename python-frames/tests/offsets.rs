//! The offset tables, checked against CPython's own headers: a C program
//! prints `offsetof` of every field the crate reads, compiled with `cc`
//! against each installed interpreter's headers (`-DPy_BUILD_CORE`, the
//! internal ones included), and its output must match the hand-written
//! tables (3.11, 3.12), the positions read in `_Py_DebugOffsets`, and the
//! debug offsets a live 3.13 process holds. Without a compiler or headers
//! the check is skipped, loudly.

mod support;

use std::collections::BTreeMap;
use std::process::Command;

use profiler_common::python::NO_OFFSET;
use python_frames::debug_offsets::{MEMBERS, position};
use python_frames::layout::{self, STATE_ASCII_SHIFT, STATE_COMPACT_SHIFT, STATE_KIND_SHIFT};
use python_frames::{Layout, ProcessMemory, Region, Version, inspect};
use support::{Python, python, run_script, skip};

/// The probe: prints `name value` lines. Names match [`expected`]'s.
const PROBE: &str = r#"
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stdio.h>
#include <string.h>
#include "pycore_runtime.h"
#include "pycore_interp.h"
#include "pycore_frame.h"
#include "pycore_code.h"
#define P(name, value) printf("%s %lu\n", name, (unsigned long)(value))

/* The lowest bit set in a PyASCIIObject's state. */
static unsigned lowest_bit(PyASCIIObject *o) {
    unsigned v;
    memcpy(&v, &o->state, sizeof v);
    return (unsigned)__builtin_ctz(v);
}

int main(void) {
    P("version", PY_VERSION_HEX >> 16);
    P("runtime_interpreters_head", offsetof(_PyRuntimeState, interpreters.head));
    P("interp_threads_head", offsetof(PyInterpreterState, threads.head));
    P("tstate_next", offsetof(PyThreadState, next));
    P("tstate_native_thread_id", offsetof(PyThreadState, native_thread_id));
#if PY_VERSION_HEX >= 0x030d0000
    P("tstate_frame", offsetof(PyThreadState, current_frame));
    P("frame_code", offsetof(_PyInterpreterFrame, f_executable));
    P("frame_instr", offsetof(_PyInterpreterFrame, instr_ptr));
#else
    P("tstate_frame", offsetof(PyThreadState, cframe));
    P("cframe_current_frame", offsetof(_PyCFrame, current_frame));
    P("frame_code", offsetof(_PyInterpreterFrame, f_code));
    P("frame_instr", offsetof(_PyInterpreterFrame, prev_instr));
#endif
    P("frame_previous", offsetof(_PyInterpreterFrame, previous));
    P("frame_owner", offsetof(_PyInterpreterFrame, owner));
#if PY_VERSION_HEX < 0x030c0000
    P("frame_is_entry", offsetof(_PyInterpreterFrame, is_entry));
#else
    P("owned_by_cstack", FRAME_OWNED_BY_CSTACK);
#endif
    P("code_adaptive", offsetof(PyCodeObject, co_code_adaptive));
    P("code_filename", offsetof(PyCodeObject, co_filename));
    P("code_qualname", offsetof(PyCodeObject, co_qualname));
    P("code_linetable", offsetof(PyCodeObject, co_linetable));
    P("code_firstlineno", offsetof(PyCodeObject, co_firstlineno));
    P("object_type", offsetof(PyObject, ob_type));
    P("type_name", offsetof(PyTypeObject, tp_name));
    P("bytes_size", offsetof(PyBytesObject, ob_base.ob_size));
    P("bytes_data", offsetof(PyBytesObject, ob_sval));
    P("unicode_length", offsetof(PyASCIIObject, length));
    P("unicode_state", offsetof(PyASCIIObject, state));
    P("unicode_ascii_size", sizeof(PyASCIIObject));
    P("unicode_compact_size", sizeof(PyCompactUnicodeObject));
    PyASCIIObject o;
    memset(&o, 0, sizeof o); o.state.kind = 1; P("state_kind_shift", lowest_bit(&o));
    memset(&o, 0, sizeof o); o.state.compact = 1; P("state_compact_shift", lowest_bit(&o));
    memset(&o, 0, sizeof o); o.state.ascii = 1; P("state_ascii_shift", lowest_bit(&o));
#if PY_VERSION_HEX >= 0x030d0000
    P("debug.total", sizeof(_Py_DebugOffsets));
    DEBUG_MEMBERS
#endif
    return 0;
}
"#;

/// Compiles and runs the probe against `python`'s headers; `None` (after
/// saying why) when the compiler or the headers are missing.
fn probe(python: &Python) -> Option<BTreeMap<String, u64>> {
    if !python.include.join("internal/pycore_frame.h").exists() {
        skip(&format!(
            "no internal headers in {} (needed to check {}'s offsets)",
            python.include.display(),
            python.label
        ));
        return None;
    }
    if Command::new("cc").arg("--version").output().is_err() {
        skip(&format!(
            "no C compiler (cc) to check {}'s offsets",
            python.label
        ));
        return None;
    }
    let dir = std::env::temp_dir().join(format!(
        "python-frames-offsets-{}-{}",
        std::process::id(),
        python.label
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let debug_members: String = MEMBERS
        .iter()
        .map(|(member, _)| format!("P(\"debug.{member}\", offsetof(_Py_DebugOffsets, {member})); "))
        .collect();
    let source = dir.join("probe.c");
    std::fs::write(&source, PROBE.replace("DEBUG_MEMBERS", &debug_members)).unwrap();
    let binary = dir.join("probe");
    let mut cc = Command::new("cc");
    cc.arg("-DPy_BUILD_CORE")
        .arg("-I")
        .arg(&python.include)
        .arg("-I")
        .arg(python.include.join("internal"));
    if let Some(extra) = &python.extra_include {
        cc.arg("-I").arg(extra);
    }
    let compiled = cc.arg(&source).arg("-o").arg(&binary).output().unwrap();
    assert!(
        compiled.status.success(),
        "compiling the probe for {}: {}",
        python.label,
        String::from_utf8_lossy(&compiled.stderr)
    );
    let output = Command::new(&binary).output().unwrap();
    assert!(output.status.success());
    let _ = std::fs::remove_dir_all(&dir);
    let values: BTreeMap<String, u64> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(' ').unwrap();
            (name.to_owned(), value.parse().unwrap())
        })
        .collect();
    eprintln!("{}: {values:?}", python.label);
    Some(values)
}

/// Every offset in `layout` by the probe's name for it; `None` for an
/// offset that does not apply (the probe must not print it).
fn expected(layout: &Layout) -> Vec<(&'static str, Option<u16>)> {
    let o = &layout.frames;
    let applies = |offset: u16| (offset != NO_OFFSET).then_some(offset);
    vec![
        ("version", Some(o.version)),
        (
            "runtime_interpreters_head",
            Some(layout.runtime_interpreters_head),
        ),
        ("interp_threads_head", Some(o.interp_threads_head)),
        ("tstate_next", Some(o.tstate_next)),
        ("tstate_native_thread_id", Some(o.tstate_native_thread_id)),
        ("tstate_frame", Some(o.tstate_frame)),
        ("cframe_current_frame", applies(o.cframe_current_frame)),
        ("frame_code", Some(o.frame_code)),
        ("frame_previous", Some(o.frame_previous)),
        ("frame_instr", Some(o.frame_instr)),
        ("frame_owner", Some(o.frame_owner)),
        ("frame_is_entry", applies(o.frame_is_entry)),
        ("code_adaptive", Some(o.code_adaptive)),
        ("code_filename", Some(layout.code_filename)),
        ("code_qualname", Some(layout.code_qualname)),
        ("code_linetable", Some(layout.code_linetable)),
        ("code_firstlineno", Some(layout.code_firstlineno)),
        ("object_type", Some(layout.object_type)),
        ("type_name", Some(layout.type_name)),
        ("bytes_size", Some(layout.bytes_size)),
        ("bytes_data", Some(layout.bytes_data)),
        ("unicode_length", Some(layout.unicode_length)),
        ("unicode_state", Some(layout.unicode_state)),
        ("unicode_ascii_size", Some(layout.unicode_ascii_size)),
        ("unicode_compact_size", Some(layout.unicode_compact_size)),
    ]
}

/// Checks `layout` (of `what`) against the probe's values.
fn check(what: &str, layout: &Layout, values: &BTreeMap<String, u64>) {
    let mut wrong = Vec::new();
    for (name, offset) in expected(layout) {
        let found = values.get(name).copied();
        if found != offset.map(u64::from) {
            wrong.push(format!("{name}: ours {offset:?}, the headers' {found:?}"));
        }
    }
    for (name, shift) in [
        ("state_kind_shift", STATE_KIND_SHIFT),
        ("state_compact_shift", STATE_COMPACT_SHIFT),
        ("state_ascii_shift", STATE_ASCII_SHIFT),
    ] {
        if values.get(name) != Some(&u64::from(shift)) {
            wrong.push(format!(
                "{name}: ours {shift}, the headers' {:?}",
                values.get(name)
            ));
        }
    }
    if let Some(&owned) = values.get("owned_by_cstack") {
        let ours = profiler_common::python::OWNED_BY_CSTACK;
        if owned != u64::from(ours) {
            wrong.push(format!(
                "FRAME_OWNED_BY_CSTACK: ours {ours}, the headers' {owned}"
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{what} differs from its headers:\n{}",
        wrong.join("\n")
    );
}

fn check_table(label: &'static str) {
    let Some(python) = python(label) else { return };
    let Some(values) = probe(&python) else { return };
    let version = Version {
        major: python.version.0,
        minor: python.version.1,
        hex: None,
    };
    let table = layout::table(version).expect("a hand-written table");
    check(&format!("the {label} table"), &table, &values);
}

#[test]
fn table_3_11_debian_headers() {
    check_table("debian-3.11");
}

#[test]
fn table_3_11_pyenv_headers() {
    check_table("pyenv-3.11.7");
}

#[test]
fn table_3_12_pyenv_headers() {
    check_table("pyenv-3.12.1");
}

/// 3.13: where the crate reads `_Py_DebugOffsets`' members, and what a live
/// process's debug offsets give, against the headers.
#[test]
fn debug_offsets_3_13() {
    let Some(python) = python("pyenv-3.13.0") else {
        return;
    };
    let Some(values) = probe(&python) else { return };
    assert_eq!(values["debug.total"], position::TOTAL as u64);
    for (member, at) in MEMBERS {
        assert_eq!(
            values[&format!("debug.{member}")],
            *at as u64,
            "_Py_DebugOffsets::{member}"
        );
    }

    let (running, _) = run_script(
        &python.binary,
        "offsets-3.13",
        "import time\nprint('ready', flush=True)\ntime.sleep(60)\n",
    );
    let pid = running.pid();
    let interpreter = inspect(pid, &Region::read_all(pid).unwrap())
        .unwrap()
        .expect("a Python process");
    check("3.13's debug offsets", interpreter.layout(), &values);
    assert!(!interpreter.free_threaded());
    // The cookie is there, at _PyRuntime.
    let memory = ProcessMemory::open(pid).unwrap();
    let cookie: [u8; 8] = memory.read_array(interpreter.runtime_address()).unwrap();
    assert_eq!(&cookie, python_frames::debug_offsets::COOKIE);
    assert_eq!(layout::table(interpreter.version()), None);
}
