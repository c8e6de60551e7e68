//! `profiler completions SHELL`: completion scripts made from the command
//! line's definitions, on stdout. No root needed.

use std::time::Duration;

use profiler_tests::*;

const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn bash_completions_name_every_subcommand_and_their_flags() {
    let run = run_profiler_ok(&["completions", "bash"], TIMEOUT);
    let script = &run.stdout;
    assert!(
        script.contains("complete -F _profiler"),
        "not a bash completion script"
    );
    for word in [
        "record",
        "agent",
        "report",
        "upload",
        "completions",
        "--upload",
        "--pyroscope-url",
        "--label",
    ] {
        assert!(script.contains(word), "no {word:?} in the bash script");
    }
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

#[test]
fn zsh_and_fish_completions_and_unknown_shells() {
    let zsh = run_profiler_ok(&["completions", "zsh"], TIMEOUT).stdout;
    assert!(zsh.starts_with("#compdef profiler"), "{zsh:.80}");
    let fish = run_profiler_ok(&["completions", "fish"], TIMEOUT).stdout;
    assert!(fish.contains("complete -c profiler"), "{fish:.80}");
    for script in [&zsh, &fish] {
        assert!(script.contains("upload") && script.contains("record"));
    }
    let run = run_profiler(&["completions", "tcsh"], TIMEOUT);
    assert!(!run.status.success());
    assert!(run.stderr.contains("bash"), "{}", run.stderr);
}
