//! Live interpreters: each installed CPython runs a script whose stack is
//! known (`a -> b -> c`, `c` spinning), and the crate must find the
//! interpreter, walk that stack as the kernel would, and name every frame
//! with its file and line. Also: a process that is not Python, and
//! versions that are not supported.

mod support;

use std::time::{Duration, Instant};

use python_frames::{InspectError, Interpreter, ProcessMemory, ReadError, Region, inspect};
use support::{Killed, Running, python, run_script};

/// Lines: `c` spins on 5-6, `b` calls it on 9, `a` calls `b` on 13, the
/// module calls `a` on 17. Each call is followed by a `return`, out of
/// tail position.
const NESTED: &str = "\
import sys

def c():
    x = 0
    while True:
        x += 1

def b():
    c()
    return 1

def a():
    b()
    return 2

print('ready', flush=True)
a()
";

/// The same functions, run by a second thread (`worker`, which calls `a`
/// on line 18) while the main thread joins it (line 23).
const THREADED: &str = "\
import threading

def c():
    x = 0
    while True:
        x += 1

def b():
    c()
    return 1

def a():
    b()
    return 2

def worker():
    print(threading.get_native_id(), flush=True)
    a()
    return 3

t = threading.Thread(target=worker)
t.start()
t.join()
";

/// Waits (and keeps waiting) once ready.
const SLEEPS: &str = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n";

/// A frame as the test sees it: qualified name, file name, line.
type Named = (String, String, Option<u32>);

/// Walks `tid`'s Python stack and names each frame.
fn named_stack(
    interpreter: &Interpreter,
    memory: &ProcessMemory,
    tid: u32,
) -> Result<Vec<Named>, ReadError> {
    interpreter
        .python_stack(memory, tid)?
        .into_iter()
        .map(|(code, index)| {
            let info = interpreter.read_code(memory, code)?;
            let line = info.line(index);
            Ok((info.qualname, info.filename, line))
        })
        .collect()
}

/// Retries (the process runs, so reads race with it) until `check` accepts
/// `tid`'s named stack, for at most 2 s; panics with the last stack seen.
fn wait_for_stack(
    interpreter: &Interpreter,
    memory: &ProcessMemory,
    tid: u32,
    check: impl Fn(&[Named]) -> bool,
) -> Vec<Named> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let stack = named_stack(interpreter, memory, tid);
        if let Ok(stack) = &stack
            && check(stack)
        {
            return stack.clone();
        }
        if Instant::now() > deadline {
            panic!("after {attempts} attempts, thread {tid}'s stack is {stack:#?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `frame` is `name` in `file` on one of `lines`.
fn is(frame: &Named, name: &str, file: &str, lines: &[u32]) -> bool {
    frame.0 == name && frame.1 == file && frame.2.is_some_and(|line| lines.contains(&line))
}

/// Inspects the running script, checking what `inspect` found.
fn inspect_running(running: &Running, version: (u8, u8)) -> Interpreter {
    let pid = running.pid();
    let regions = Region::read_all(pid).expect("reading the maps");
    let started = Instant::now();
    let interpreter = inspect(pid, &regions)
        .expect("inspecting")
        .expect("a Python process");
    let took = started.elapsed();
    assert_eq!(
        (interpreter.version().major, interpreter.version().minor),
        version
    );
    let process = interpreter.process();
    assert_eq!(
        process.offsets.version,
        u16::from(version.0) << 8 | u16::from(version.1)
    );
    assert_eq!(
        process.interpreters_head,
        interpreter.runtime_address() + u64::from(interpreter.layout().runtime_interpreters_head)
    );
    // The eval loop is in the interpreter file's mappings. (_PyRuntime is
    // too in these builds, in a .PyRuntime section, but could be in a .bss
    // beyond them: the stack walks check its address.)
    let in_file = |address: u64| {
        regions
            .iter()
            .any(|r| r.path == interpreter.path() && r.start <= address && address < r.end)
    };
    for range in process.eval.iter().filter(|r| **r != [0, 0]) {
        assert!(range[0] < range[1] && in_file(range[0]) && in_file(range[1] - 1));
    }
    assert!(process.eval[0] != [0, 0]);
    eprintln!(
        "{pid}: Python {} in {} (inspected in {took:?}), _PyRuntime {:#x}, {process:#x?}",
        interpreter.version(),
        interpreter.path(),
        interpreter.runtime_address()
    );
    interpreter
}

fn main_thread(label: &'static str) {
    let Some(python) = python(label) else { return };
    let (running, ready) = run_script(&python.binary, &format!("{label}-nested"), NESTED);
    assert_eq!(ready, "ready");
    let interpreter = inspect_running(&running, python.version);
    let memory = ProcessMemory::open(running.pid()).expect("opening the memory");
    let file = running.script.to_str().unwrap();
    let stack = wait_for_stack(&interpreter, &memory, running.pid(), |stack| {
        stack.len() == 4
            && is(&stack[0], "c", file, &[5, 6])
            && is(&stack[1], "b", file, &[9])
            && is(&stack[2], "a", file, &[13])
            && is(&stack[3], "<module>", file, &[17])
    });
    eprintln!("{label}: {stack:?}");

    // Addresses that are no code object: another object (c's name, a
    // str), the runtime state, nothing mapped.
    let (c, _) = interpreter.python_stack(&memory, running.pid()).unwrap()[0];
    let name = memory
        .read_u64(c + u64::from(interpreter.layout().code_qualname))
        .unwrap();
    for address in [name, interpreter.runtime_address(), 0, 8] {
        match interpreter.read_code(&memory, address) {
            Err(ReadError::NotCode { address: a }) => assert_eq!(a, address),
            other => panic!("{address:#x}: {other:?}"),
        }
    }
    assert_eq!(interpreter.read_code(&memory, c).unwrap().qualname, "c");

    // A thread that is not Python's.
    match interpreter.python_stack(&memory, 1) {
        Err(ReadError::NoThreadState { tid: 1, .. }) => {}
        other => panic!("{other:?}"),
    }
    // Once the process is gone, reads say so.
    drop(running);
    match interpreter.read_code(&memory, c) {
        Err(ReadError::ProcessGone { .. }) => {}
        other => panic!("after the exit: {other:?}"),
    }
}

fn other_thread(label: &'static str) {
    let Some(python) = python(label) else { return };
    let (running, printed) = run_script(&python.binary, &format!("{label}-threaded"), THREADED);
    let pid = running.pid();
    let printed: u32 = printed.parse().expect("the worker's native id");
    let tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_str().unwrap().parse().unwrap())
        .filter(|&tid| tid != pid)
        .collect();
    assert_eq!(tasks, [printed], "the worker is the one other thread");
    let tid = tasks[0];

    let interpreter = inspect_running(&running, python.version);
    let memory = ProcessMemory::open(pid).expect("opening the memory");
    let file = running.script.to_str().unwrap();
    let stack = wait_for_stack(&interpreter, &memory, tid, |stack| {
        stack.len() >= 6
            && is(&stack[0], "c", file, &[5, 6])
            && is(&stack[1], "b", file, &[9])
            && is(&stack[2], "a", file, &[13])
            && is(&stack[3], "worker", file, &[18])
            && stack[4..].iter().any(|f| f.0 == "Thread.run")
            && stack[4..].iter().all(|f| f.1.ends_with("/threading.py"))
            && stack.last().unwrap().0 == "Thread._bootstrap"
    });
    eprintln!("{label} thread {tid}: {stack:?}");
    // The main thread waits in join(), called from the module on line 23.
    let main = wait_for_stack(&interpreter, &memory, pid, |stack| {
        stack.len() >= 2
            && is(stack.last().unwrap(), "<module>", file, &[23])
            && stack[0].1.ends_with("/threading.py")
    });
    eprintln!("{label} main thread: {main:?}");
}

/// Names of every string kind: a Latin-1 one, a UCS-2 one, a UCS-4 one,
/// an ASCII one too long to be read whole, in a file whose name is UCS-2.
fn names(label: &'static str) {
    let Some(python) = python(label) else { return };
    let long = "x".repeat(1500);
    let ucs4 = "\u{20000}";
    let source = format!(
        "\
def {long}():
    x = 0
    while True:
        x += 1

def {ucs4}():
    {long}()
    return 1

def функция():
    {ucs4}()
    return 1

def café():
    функция()
    return 1

print('ready', flush=True)
café()
"
    );
    let (running, _) = run_script(&python.binary, &format!("{label}-nämé-€"), &source);
    let interpreter = inspect_running(&running, python.version);
    let memory = ProcessMemory::open(running.pid()).unwrap();
    let file = running.script.to_str().unwrap();
    let truncated = &long[..python_frames::MAX_NAME_CHARS];
    let stack = wait_for_stack(&interpreter, &memory, running.pid(), |stack| {
        stack.len() == 5
            && is(&stack[0], truncated, file, &[3, 4])
            && is(&stack[1], "\u{20000}", file, &[7])
            && is(&stack[2], "функция", file, &[11])
            && is(&stack[3], "café", file, &[15])
            && is(&stack[4], "<module>", file, &[19])
    });
    eprintln!("{label}: {:?}", &stack[1..]);
}

#[test]
fn debian_3_11_names() {
    names("debian-3.11");
}

#[test]
fn pyenv_3_11_names() {
    names("pyenv-3.11.7");
}

#[test]
fn pyenv_3_12_names() {
    names("pyenv-3.12.1");
}

#[test]
fn pyenv_3_13_names() {
    names("pyenv-3.13.0");
}

#[test]
fn debian_3_11_main_thread() {
    main_thread("debian-3.11");
}

#[test]
fn debian_3_11_other_thread() {
    other_thread("debian-3.11");
}

#[test]
fn pyenv_3_11_main_thread() {
    main_thread("pyenv-3.11.7");
}

#[test]
fn pyenv_3_11_other_thread() {
    other_thread("pyenv-3.11.7");
}

#[test]
fn pyenv_3_12_main_thread() {
    main_thread("pyenv-3.12.1");
}

#[test]
fn pyenv_3_12_other_thread() {
    other_thread("pyenv-3.12.1");
}

#[test]
fn pyenv_3_13_main_thread() {
    main_thread("pyenv-3.13.0");
}

#[test]
fn pyenv_3_13_other_thread() {
    other_thread("pyenv-3.13.0");
}

#[test]
fn not_python() {
    let sleep = Killed(
        std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("running sleep"),
    );
    let pid = sleep.0.id();
    let regions = regions_after_exec(pid, "sleep");
    assert!(inspect(pid, &regions).unwrap().is_none());
}

/// `pid`'s mappings once it maps a file named `name` (until its exec,
/// they are the test's own), for at most 2 s.
fn regions_after_exec(pid: u32, name: &str) -> Vec<Region> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let regions = Region::read_all(pid).unwrap();
        if regions.iter().any(|r| r.file_name() == name) {
            return regions;
        }
        assert!(Instant::now() < deadline, "{pid} never mapped {name}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A program named like Python that is not (no `_PyRuntime`): the name
/// only makes a file worth a look.
#[test]
fn named_python_but_not() {
    let fake =
        std::env::temp_dir().join(format!("python-frames-{}/python3.12", std::process::id()));
    std::fs::create_dir_all(fake.parent().unwrap()).unwrap();
    std::fs::copy("/bin/sleep", &fake).unwrap();
    let sleep = Killed(std::process::Command::new(&fake).arg("30").spawn().unwrap());
    let pid = sleep.0.id();
    let regions = regions_after_exec(pid, "python3.12");
    assert!(inspect(pid, &regions).unwrap().is_none());
    drop(sleep);
    std::fs::remove_dir_all(fake.parent().unwrap()).unwrap();
}

/// A process that exited: its maps cannot be read, and inspecting it with
/// mappings read before says it is gone.
#[test]
fn gone() {
    let Some(python) = python("pyenv-3.12.1") else {
        return;
    };
    let (running, _) = run_script(&python.binary, "gone", SLEEPS);
    let pid = running.pid();
    let regions = Region::read_all(pid).unwrap();
    drop(running);
    assert!(matches!(
        Region::read_all(pid),
        Err(InspectError::ProcessGone { .. })
    ));
    match inspect(pid, &regions) {
        Err(InspectError::ProcessGone { pid: p }) => assert_eq!(p, pid),
        other => panic!("{other:?}"),
    }
}

fn unsupported(label: &'static str) {
    let Some(python) = python(label) else { return };
    let (running, _) = run_script(&python.binary, &format!("{label}-unsupported"), SLEEPS);
    let pid = running.pid();
    let regions = Region::read_all(pid).unwrap();
    match inspect(pid, &regions) {
        Err(error @ InspectError::UnsupportedVersion { pid: p, version }) => {
            assert_eq!(p, pid);
            assert_eq!((version.major, version.minor), python.version);
            let message = error.to_string();
            assert!(message.contains("3.11, 3.12, 3.13"), "{message}");
            eprintln!("{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unsupported_3_10() {
    unsupported("pyenv-3.10.13");
}

#[test]
fn unsupported_3_9() {
    unsupported("pyenv-3.9.18");
}
