//! Shell command lines as what they do: the actions a command line given
//! to a shell would perform, for the gateways that receive commands as
//! one string (the hooks' `Bash` and `exec_command` tools).
//!
//! What it guarantees: every program the shell would run is returned as an
//! [`Exec`] with the exact argument vector the shell would pass it. A
//! command line whose effect the shell decides only when it runs
//! (expansions, substitutions, globs, functions) is refused with a reason
//! that says what to write instead.

use kernel_core::{Action, Exec};

/// The actions `command`, given to a POSIX shell in `cwd`, would perform,
/// in the order the shell would start them; or why it cannot be known
/// before it runs. Never empty when `Ok`.
pub fn command_actions(command: &str, cwd: Option<&str>) -> Result<Vec<Action>, String> {
    let argv = parse_command(command)?;
    let Some((program, args)) = argv.split_first() else {
        return Err("empty command".into());
    };
    let mut exec = Exec::new(program.clone()).args(args.iter().cloned());
    exec.cwd = cwd.map(str::to_owned);
    Ok(vec![Action::Exec(exec)])
}

/// Splits a shell command into the argument vector the shell would run,
/// or refuses it when the shell would do more than run one program with
/// literal arguments: lists and pipes (`;`, `&`, `|`), redirections,
/// subshells, substitutions and expansions (`$`, backquotes, globs, `~`,
/// braces), comments, and leading variable assignments.
pub fn parse_command(command: &str) -> Result<Vec<String>, String> {
    let refuse = |what: &str| {
        Err(format!(
            "`{command}` is not a single command with literal arguments ({what}); \
             run one program per call, without shell syntax"
        ))
    };
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut escaped = false;
    let mut word_start = true;
    for c in command.chars() {
        if escaped {
            escaped = false;
            word_start = false;
            continue;
        }
        match quote {
            Quote::Single => {
                if c == '\'' {
                    quote = Quote::None;
                }
            }
            Quote::Double => match c {
                '"' => quote = Quote::None,
                '\\' => escaped = true,
                '$' | '`' => return refuse("a substitution or expansion"),
                _ => {}
            },
            Quote::None => match c {
                '\'' => quote = Quote::Single,
                '"' => quote = Quote::Double,
                '\\' => escaped = true,
                ';' | '&' | '|' | '\n' | '\r' => return refuse("a list or a pipe"),
                '<' | '>' => return refuse("a redirection"),
                '(' | ')' => return refuse("a subshell"),
                '$' | '`' => return refuse("a substitution or expansion"),
                '*' | '?' | '[' | ']' | '{' | '}' => return refuse("a pattern or brace expansion"),
                '~' if word_start => return refuse("a home directory expansion"),
                '#' if word_start => return refuse("a comment"),
                _ => {}
            },
        }
        word_start = quote == Quote::None && !escaped && c.is_whitespace();
    }
    let words = shell_words::split(command).map_err(|e| format!("`{command}`: {e}"))?;
    let Some(first) = words.first() else {
        return Err("empty command".into());
    };
    if let Some((name, _)) = first.split_once('=')
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return refuse("a variable assignment");
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn plain_commands_become_their_argument_vector() {
        assert_eq!(parse_command("ls -la").unwrap(), ["ls", "-la"]);
        assert_eq!(
            parse_command(r#"git commit -m "fix: a; b | c""#).unwrap(),
            ["git", "commit", "-m", "fix: a; b | c"]
        );
        assert_eq!(
            parse_command(r"echo 'a $b' c\ d").unwrap(),
            ["echo", "a $b", "c d"]
        );
        assert_eq!(parse_command("echo a=b").unwrap(), ["echo", "a=b"]);
    }

    proptest::proptest! {
        /// Any argument vector, quoted for the shell, is parsed back to
        /// exactly itself: what is decided is what the shell would run.
        #[test]
        fn quoted_argument_vectors_round_trip(
            argv in proptest::collection::vec("[a-zA-Z0-9_./=:,+@%-]{1,12}|[ -~]{0,12}", 1..6)
        ) {
            // A program name is a plain word.
            let mut argv = argv;
            argv[0] = "prog".to_owned();
            let quoted: Vec<String> = argv
                .iter()
                .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
                .collect();
            let command = quoted.join(" ");
            proptest::prop_assert_eq!(parse_command(&command).unwrap(), argv);
        }

        /// Whatever the input, parsing never panics, and an accepted
        /// command has no list, pipe or redirection operator and no
        /// substitution that a shell would act on, as an independent
        /// scanner of shell quoting sees it. The inputs are built from
        /// shell tokens, so that quoting, escapes and operators meet often.
        #[test]
        fn an_accepted_command_has_nothing_a_shell_would_act_on(
            command in proptest::strategy::Strategy::prop_map(proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("ls"), proptest::strategy::Just("a.txt"),
                    proptest::strategy::Just(" "), proptest::strategy::Just("'"),
                    proptest::strategy::Just("\""), proptest::strategy::Just("\\"),
                    proptest::strategy::Just(";"), proptest::strategy::Just("|"),
                    proptest::strategy::Just("&"), proptest::strategy::Just(">"),
                    proptest::strategy::Just("<"), proptest::strategy::Just("$"),
                    proptest::strategy::Just("`"), proptest::strategy::Just("("),
                    proptest::strategy::Just("\n"), proptest::strategy::Just("-l"),
                ],
                0..14,
            ), |tokens: Vec<&str>| tokens.concat())
        ) {
            if let Ok(argv) = parse_command(&command) {
                proptest::prop_assert!(!argv.is_empty());
                let active = shell_active_characters(&command);
                proptest::prop_assert!(
                    active.iter().all(|c| !matches!(c, ';' | '|' | '&' | '<' | '>' | '$' | '`' | '\n')),
                    "accepted {command:?} although a shell acts on {active:?}"
                );
            }
        }

        /// Random printable text never makes the parser panic.
        #[test]
        fn parsing_is_total(command in "[ -~\n]{0,40}") {
            let _ = parse_command(&command);
        }
    }

    /// The characters of `command` that a POSIX shell would act on: those
    /// outside any quotes and not escaped, plus `$` and `` ` `` inside
    /// double quotes. A reference model, independent of the parser.
    fn shell_active_characters(command: &str) -> Vec<char> {
        #[derive(PartialEq)]
        enum Quote {
            None,
            Single,
            Double,
        }
        let mut quote = Quote::None;
        let mut active = Vec::new();
        let mut chars = command.chars();
        while let Some(c) = chars.next() {
            match (&quote, c) {
                (Quote::None, '\\') => {
                    // An escaped newline is a line continuation; anything
                    // else escaped is literal.
                    let _ = chars.next();
                }
                (Quote::None, '\'') => quote = Quote::Single,
                (Quote::None, '"') => quote = Quote::Double,
                (Quote::None, c) => active.push(c),
                (Quote::Single, '\'') | (Quote::Double, '"') => quote = Quote::None,
                (Quote::Double, '\\') => {
                    let _ = chars.next();
                }
                (Quote::Double, '$' | '`') => active.push(c),
                _ => {}
            }
        }
        active
    }

    #[test]
    fn anything_the_shell_would_do_more_with_is_refused() {
        for command in [
            "ls; rm -rf /",
            "ls && rm x",
            "ls || rm x",
            "cat a | sh",
            "sleep 1 &",
            "echo x > /etc/passwd",
            "sh < script",
            "(rm x)",
            "echo $(rm x)",
            "echo `rm x`",
            r#"echo "$(rm x)""#,
            "echo $HOME",
            "rm *",
            "ls ~",
            "echo {a,b}",
            "FOO=1 ls",
            "ls\nrm x",
            "# nothing",
            "",
            "   ",
            "echo 'unterminated",
        ] {
            assert!(parse_command(command).is_err(), "accepted {command:?}");
        }
    }
}
