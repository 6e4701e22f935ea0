//! Shell command lines as what they do: the actions a command line given
//! to a shell would perform, for the gateways that receive commands as
//! one string (the hooks' `Bash` and `exec_command` tools).
//!
//! What is decomposed: a list (`&&`, `||`, `;`, newlines) of pipelines
//! (`|`, `|&`) of simple commands whose words are literal, written with
//! any of the shell's quotes and backslash escapes, and with redirections
//! to and from files and between descriptors. It becomes, in the order
//! the shell would start them:
//!
//! - per simple command, one file action per redirection, in the order
//!   written: [`Action::file_write_descriptor`] for `>`, `>>`, `>|`, `&>`
//!   and `&>>` (the content is not known before the command runs),
//!   [`Action::file_read`] for `<`, both for `<>`; then
//! - one [`Action::Exec`] per program, with the exact argument vector the
//!   shell passes it and `cwd` set to the directory it runs in.
//!
//! Relative file names and programs are relative to the directory the
//! command runs in (file names are joined to it here; a still-relative
//! result is made absolute against the same directory by canonicalisation).
//! `cd DIR` (one literal directory, absolute or starting with `./` or
//! `../`) is followed: the commands after it get `DIR` as their directory,
//! and, where they would also run if `cd` failed (after `;`, or after `||`),
//! the old directory too, each as an action of its own. `timeout` (GNU
//! coreutils and BusyBox options) is decomposed into itself and the
//! program it starts. `sh -c SCRIPT` and `bash -lc SCRIPT` (also `dash`,
//! `zsh`; exactly those three words; the shell by its bare name or in
//! `/bin` or `/usr/bin`) are the actions of `SCRIPT`, run from the
//! shell's directory, up to three shells deep.
//!
//! What needs no action: duplicating or closing descriptors (`2>&1`,
//! `>&2`, `<&0`, `3>&-`, `|&`) touches no file (as bash reads it, a `-`
//! right after `>&` or `<&` closes, and what follows it is a word of its
//! own: `>&-x` passes `x`); reading from or writing to `/dev/null`,
//! written exactly so, touches nothing.
//!
//! What is refused, with a reason saying what to write instead: anything
//! whose effect the shell decides only when it runs or that the shell does
//! itself rather than a program: parameter and variable expansion (`$X`,
//! `${X}`), command substitution (`$(..)`, backquotes), arithmetic, globs
//! (`*`, `?`, `[`), braces (`{`, `}`), `~` where the shell expands it,
//! subshells and groups, background `&`, here-documents and here-strings,
//! process substitution, leading `NAME=value` assignments, comments,
//! compound commands (`if`, `for`, `!` ..), bash's network redirections
//! (`/dev/tcp/..`, `/dev/udp/..`), what other shells read differently (a
//! redirection without a command, for which zsh runs `cat`; `>!`;
//! `<1-5>`; a descriptor number over 9, an argument to dash), shell
//! builtins that change the shell itself (`export`, `alias`, `hash`,
//! `read` ..), programs that run their arguments as shell code (`eval`,
//! `exec`, `source`, `.`, a shell given a script file, standard input or
//! options), and programs that start another program given in their
//! arguments (`env CMD`, `sudo`, `xargs`, `nohup`, `nice`, `time`,
//! `command`, `find -exec` .., see the lists in the source). Lines over
//! [`MAX_COMMAND_BYTES`], with more than [`MAX_COMMANDS`] simple commands
//! or [`MAX_REDIRECTIONS`] redirections, or decomposing into more than
//! [`MAX_ACTIONS`] actions are refused too.
//!
//! The reading is bash's (a superset of POSIX sh's) with its default
//! options, as run by `bash -c`: in particular without aliases (which a
//! non-interactive bash does not expand) and without history expansion.
//! Names are taken as programs: a function or alias of the same name that
//! the agent's shell defines at startup would run instead, and a builtin
//! that is also a program (`echo`, `printf`, `test`, `pwd`, `kill`) is
//! decided as that program. Launchers and shells are recognised by name
//! (without regard to case, as a file system may do): a policy that allows
//! a program allows whatever that program does.
//!
//! Parsing is total: any input gets an answer, never a panic, with work
//! bounded by its length.

use kernel_core::{Action, Exec};
use std::iter::Peekable;
use std::str::CharIndices;

/// Longest command line decomposed, in bytes.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Most simple commands in one command line.
pub const MAX_COMMANDS: usize = 64;
/// Most redirections in one command line (descriptor duplications
/// included).
pub const MAX_REDIRECTIONS: usize = 64;
/// Most actions one command line decomposes into.
pub const MAX_ACTIONS: usize = 256;

/// The actions `command`, given to bash in `cwd`, would perform, in the
/// order the shell would start them; or why that cannot be known before
/// it runs. Never empty when `Ok`: a line that runs no program and touches
/// no file is refused. Every program the shell would run is an
/// [`Action::Exec`] among them with the exact argument vector the shell
/// would pass it, and every file a redirection opens is a file action.
pub fn command_actions(command: &str, cwd: Option<&str>) -> Result<Vec<Action>, String> {
    if command.len() > MAX_COMMAND_BYTES {
        return Err(format!(
            "the command line is {} bytes, over the limit of {MAX_COMMAND_BYTES}: split it across several calls",
            command.len()
        ));
    }
    let mut budget = MAX_SCRIPT_BYTES;
    let actions = decompose(command, cwd, 0, &mut budget)?;
    if actions.is_empty() {
        return Err(
            "the command line runs no program and opens no file (`cd` alone changes nothing the kernel decides): give the command to run, as in `cd DIR && COMMAND`"
                .into(),
        );
    }
    Ok(actions)
}

/// Most shells nested in one command line through `SHELL -c SCRIPT`.
const MAX_SCRIPT_DEPTH: usize = 3;
/// Most bytes read for one command line, counting each script a shell in
/// it runs (once per directory it may run in).
const MAX_SCRIPT_BYTES: usize = 4 * MAX_COMMAND_BYTES;

/// The actions of `command` run from `cwd`, `depth` shells deep, reading
/// no more than `budget` bytes in all.
fn decompose(
    command: &str,
    cwd: Option<&str>,
    depth: usize,
    budget: &mut usize,
) -> Result<Vec<Action>, String> {
    if depth > MAX_SCRIPT_DEPTH {
        return Err(
            "shells run shells too deeply to be decided: run the innermost command directly".into(),
        );
    }
    *budget = budget.checked_sub(command.len()).ok_or(
        "the command line and the scripts its shells run are too large to decide: split it across several calls",
    )?;
    let tokens = lex(command)?;
    let line = parse(&tokens)?;
    plan(&line, cwd, depth, budget)
}

// ---------------------------------------------------------------------
// Tokens

/// How a redirection opens its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Redir {
    /// `<`
    In,
    /// `>`, `>>`, `>|`, `&>`, `&>>`
    Out,
    /// `<>`
    ReadWrite,
    /// `<&`
    DupIn,
    /// `>&`
    DupOut,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Redirect {
        op: Redir,
        /// Whether a descriptor number was written before the operator.
        numbered: bool,
        text: &'static str,
    },
    /// `|` or `|&`.
    Pipe,
    And,
    Or,
    Semi,
    Newline,
}

impl Token {
    fn text(&self) -> &str {
        match self {
            Self::Word(word) => word,
            Self::Redirect { text, .. } => text,
            Self::Pipe => "|",
            Self::And => "&&",
            Self::Or => "||",
            Self::Semi => ";",
            Self::Newline => "newline",
        }
    }
}

/// Up to 40 characters of `src` from byte `at`, to the next blank, for
/// messages.
fn fragment(src: &str, at: usize) -> String {
    let rest = src.get(at..).unwrap_or_default();
    let mut out: String = rest
        .chars()
        .take_while(|c| !matches!(c, ' ' | '\t' | '\n'))
        .take(40)
        .collect();
    if out.len() < rest.len() && rest.chars().nth(40).is_some_and(|c| !c.is_whitespace()) {
        out.push('…');
    }
    out
}

struct Lexer<'a> {
    src: &'a str,
    chars: Peekable<CharIndices<'a>>,
    tokens: Vec<Token>,
    word: String,
    /// A word has begun (it may still be empty: `''`).
    in_word: bool,
    /// The word so far is unquoted ASCII digits (a descriptor number if a
    /// redirection operator follows).
    digits_only: bool,
    /// The previous character of this word, if it was unquoted.
    prev_unquoted: Option<char>,
}

impl Lexer<'_> {
    fn end_word(&mut self) {
        if self.in_word {
            self.tokens
                .push(Token::Word(std::mem::take(&mut self.word)));
        }
        self.in_word = false;
        self.digits_only = true;
        self.prev_unquoted = None;
    }

    /// At `<` or `>`: whether the word before it is a descriptor number
    /// (unquoted digits). Ends the word either way. A number of more than
    /// one digit is a descriptor to bash but an argument to dash, so it is
    /// refused.
    fn take_io_number(&mut self) -> Result<bool, String> {
        let digits = self.in_word && self.digits_only && !self.word.is_empty();
        if digits && self.word.len() > 1 {
            return Err(format!(
                "shells read `{}` right before a redirection differently (a descriptor or an argument): use a descriptor from 0 to 9, or put a blank before the redirection",
                self.word
            ));
        }
        if digits {
            self.word.clear();
            self.in_word = false;
            self.digits_only = true;
            self.prev_unquoted = None;
        } else {
            self.end_word();
        }
        Ok(digits)
    }

    fn eat(&mut self, c: char) -> bool {
        self.chars.next_if(|&(_, next)| next == c).is_some()
    }

    fn literal(&mut self, c: char) {
        self.word.push(c);
        self.in_word = true;
        self.digits_only = false;
        self.prev_unquoted = None;
    }

    fn single_quoted(&mut self) -> Result<(), String> {
        self.in_word = true;
        self.digits_only = false;
        self.prev_unquoted = None;
        for (_, c) in self.chars.by_ref() {
            if c == '\'' {
                return Ok(());
            }
            self.word.push(c);
        }
        Err("a `'` quote is not closed".into())
    }

    fn double_quoted(&mut self) -> Result<(), String> {
        self.in_word = true;
        self.digits_only = false;
        self.prev_unquoted = None;
        while let Some((i, c)) = self.chars.next() {
            match c {
                '"' => return Ok(()),
                '\\' => match self.chars.peek().map(|&(_, next)| next) {
                    Some(next @ ('$' | '`' | '"' | '\\')) => {
                        self.chars.next();
                        self.word.push(next);
                    }
                    Some('\n') => {
                        self.chars.next();
                    }
                    _ => self.word.push('\\'),
                },
                '$' | '`' => return Err(expansion(self.src, i)),
                c => self.word.push(c),
            }
        }
        Err("a `\"` quote is not closed".into())
    }

    /// Whether what follows is `N-M>` (zsh's numeric glob `<N-M>`).
    fn numeric_glob_follows(&self) -> bool {
        let mut rest = self.chars.clone().map(|(_, c)| c);
        let mut dash = false;
        for c in rest.by_ref() {
            match c {
                '0'..='9' => {}
                '-' if !dash => dash = true,
                '>' => return dash,
                _ => return false,
            }
        }
        false
    }

    fn redirect(&mut self, first: char) -> Result<(), String> {
        let numbered = self.take_io_number()?;
        let (op, text) = if first == '<' {
            if self.eat('<') {
                return Err(
                    "here-documents (`<<`) and here-strings (`<<<`) are not supported: write the input to a file first and redirect it with `< FILE`"
                        .into(),
                );
            } else if self.eat('>') {
                (Redir::ReadWrite, "<>")
            } else if self.eat('&') {
                (Redir::DupIn, "<&")
            } else if self.numeric_glob_follows() {
                return Err(
                    "zsh reads `<N-M>` as a pattern of numbers: put a blank after `<`".into(),
                );
            } else {
                (Redir::In, "<")
            }
        } else if self.eat('>') {
            (Redir::Out, ">>")
        } else if self.eat('|') {
            (Redir::Out, ">|")
        } else if self.eat('&') {
            (Redir::DupOut, ">&")
        } else {
            (Redir::Out, ">")
        };
        if op == Redir::Out && self.chars.peek().is_some_and(|&(_, next)| next == '!') {
            return Err(format!(
                "zsh reads `{text}!` as `{text}|` and bash as a file name starting with `!`: write `>|`, or quote the name"
            ));
        }
        if self.chars.peek().is_some_and(|&(_, next)| next == '(') {
            return Err(
                "process substitution (`<(..)`, `>(..)`) is not supported: write the output to a file first and name the file"
                    .into(),
            );
        }
        self.tokens.push(Token::Redirect { op, numbered, text });
        if matches!(op, Redir::DupIn | Redir::DupOut) {
            self.close_dash();
        }
        Ok(())
    }

    /// After `>&` or `<&`, bash takes an unquoted `-` (past blanks and
    /// line continuations) as a word by itself, closing the descriptor:
    /// `>&-x` closes standard output and passes `x` as an argument.
    fn close_dash(&mut self) {
        let mut ahead = self.chars.clone();
        let mut skipped = 0;
        loop {
            match ahead.next().map(|(_, c)| c) {
                Some(' ' | '\t') => skipped += 1,
                Some('\\') if ahead.next().map(|(_, c)| c) == Some('\n') => skipped += 2,
                Some('-') => break,
                _ => return,
            }
        }
        for _ in 0..=skipped {
            self.chars.next();
        }
        self.tokens.push(Token::Word("-".into()));
    }

    fn run(mut self) -> Result<Vec<Token>, String> {
        while let Some((i, c)) = self.chars.next() {
            match c {
                ' ' | '\t' => self.end_word(),
                '\n' => {
                    self.end_word();
                    self.tokens.push(Token::Newline);
                }
                '|' => {
                    self.end_word();
                    if self.eat('|') {
                        self.tokens.push(Token::Or);
                    } else {
                        // `|&` pipes standard error too: no file.
                        self.eat('&');
                        self.tokens.push(Token::Pipe);
                    }
                }
                '&' => {
                    self.end_word();
                    if self.eat('&') {
                        self.tokens.push(Token::And);
                    } else if self.eat('>') {
                        let text = if self.eat('>') { "&>>" } else { "&>" };
                        self.tokens.push(Token::Redirect {
                            op: Redir::Out,
                            numbered: false,
                            text,
                        });
                    } else {
                        return Err(
                            "`&` runs a command in the background, out of sight: run it in the foreground, without `&`"
                                .into(),
                        );
                    }
                }
                ';' => {
                    self.end_word();
                    if self
                        .chars
                        .peek()
                        .is_some_and(|&(_, next)| matches!(next, ';' | '&'))
                    {
                        return Err(format!(
                            "syntax error near `{}`: `case` is not supported",
                            fragment(self.src, i)
                        ));
                    }
                    self.tokens.push(Token::Semi);
                }
                '(' | ')' => {
                    return Err(
                        "`( )` runs commands in a subshell or defines a function: run the commands without parentheses"
                            .into(),
                    );
                }
                '<' | '>' => self.redirect(c)?,
                '\'' => self.single_quoted()?,
                '"' => self.double_quoted()?,
                '\\' => match self.chars.next() {
                    None => return Err("the command ends with a lone `\\`: remove it".into()),
                    // A line continuation: removed, the word goes on.
                    Some((_, '\n')) => {}
                    Some((_, next)) => self.literal(next),
                },
                '$' | '`' => return Err(expansion(self.src, i)),
                '*' | '?' | '[' => {
                    return Err(format!(
                        "the shell would expand the pattern in `{}`: write the file names instead (quote it if it is meant literally; write `test ..` for `[ .. ]`)",
                        fragment(self.src, i)
                    ));
                }
                '{' | '}' => {
                    return Err(format!(
                        "the shell may expand the braces in `{}` or read them as a group: write each word out, or quote the braces",
                        fragment(self.src, i)
                    ));
                }
                '~' if !self.in_word || matches!(self.prev_unquoted, Some('=' | ':')) => {
                    return Err(format!(
                        "the shell would expand `~` in `{}` to a home directory: write the absolute path instead",
                        fragment(self.src, i)
                    ));
                }
                '#' if !self.in_word => {
                    return Err("`#` starts a comment: leave the comment out".into());
                }
                // zsh expands `=name` to the path of the program `name`.
                '=' if !self.in_word
                    && self.chars.peek().is_some_and(|&(_, next)| {
                        !matches!(next, ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>')
                    }) =>
                {
                    return Err(format!(
                        "some shells expand a word starting with `=` (`{}`): quote it",
                        fragment(self.src, i)
                    ));
                }
                c if c.is_control() => {
                    return Err(format!(
                        "the command has a control character (U+{:04X}) outside quotes: remove it (separate commands with plain newlines)",
                        u32::from(c)
                    ));
                }
                c => {
                    self.word.push(c);
                    self.in_word = true;
                    self.digits_only &= c.is_ascii_digit();
                    self.prev_unquoted = Some(c);
                }
            }
        }
        self.end_word();
        Ok(self.tokens)
    }
}

/// The reason for refusing the `$` or backquote at byte `at` of `src`.
fn expansion(src: &str, at: usize) -> String {
    let rest = src.get(at..).unwrap_or_default();
    if rest.starts_with('`') {
        "the shell substitutes the output of a backquoted command when it runs: run the inner command on its own, then write its output literally".into()
    } else if rest.starts_with("$((") || rest.starts_with("$[") {
        "the shell computes `$((..))` when it runs: write the number instead".into()
    } else if rest.starts_with("$(") {
        "the shell substitutes the output of `$(..)` when it runs: run the inner command on its own, then write its output literally".into()
    } else if rest.starts_with("$'") || rest.starts_with("$\"") {
        format!(
            "the shell decodes `{}` when it runs: write the characters in plain quotes instead",
            fragment(src, at)
        )
    } else {
        format!(
            "the shell expands `{}` when it runs: write the value itself",
            fragment(src, at)
        )
    }
}

fn lex(src: &str) -> Result<Vec<Token>, String> {
    if src.contains('\0') {
        return Err("the command contains a NUL character".into());
    }
    Lexer {
        src,
        chars: src.char_indices().peekable(),
        tokens: Vec::new(),
        word: String::new(),
        in_word: false,
        digits_only: true,
        prev_unquoted: None,
    }
    .run()
}

// ---------------------------------------------------------------------
// Structure

/// A file a redirection opens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Read(String),
    Write(String),
}

/// What one simple command does, wherever it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Changes the shell's directory to this one.
    Cd(String),
    /// A shell runs this script (`sh -c SCRIPT`, `bash -lc SCRIPT`): its
    /// actions are the script's.
    Script(String),
    /// Runs these programs (a launcher and what it starts), each an
    /// argument vector with the program first.
    Run(Vec<Vec<String>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Command {
    targets: Vec<Target>,
    kind: Kind,
}

type Pipeline = Vec<Command>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Connector {
    And,
    Or,
}

/// Pipelines joined by `&&` and `||`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct AndOr {
    first: Pipeline,
    rest: Vec<(Connector, Pipeline)>,
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    commands: usize,
    redirections: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn skip_newlines(&mut self) {
        while self.peek() == Some(&Token::Newline) {
            self.pos += 1;
        }
    }

    fn syntax_error(&self) -> String {
        match self.peek() {
            Some(token) => format!(
                "syntax error near `{}`: a command is missing there",
                token.text()
            ),
            None => "syntax error: the command line ends where a command is missing".into(),
        }
    }

    fn simple(&mut self) -> Result<(Vec<String>, Vec<Target>), String> {
        let mut words = Vec::new();
        let mut targets = Vec::new();
        let mut any = false;
        while let Some(token) = self.peek() {
            match token {
                Token::Word(word) => words.push(word.clone()),
                &Token::Redirect { op, numbered, text } => {
                    self.redirections += 1;
                    if self.redirections > MAX_REDIRECTIONS {
                        return Err(format!(
                            "more than {MAX_REDIRECTIONS} redirections in one command line: split it across several calls"
                        ));
                    }
                    self.pos += 1;
                    let Some(Token::Word(target)) = self.peek() else {
                        return Err(format!("syntax error: `{text}` has no file name after it"));
                    };
                    redirection(op, numbered, text, target, &mut targets)?;
                }
                _ => break,
            }
            any = true;
            self.pos += 1;
        }
        if !any {
            return Err(self.syntax_error());
        }
        self.commands += 1;
        if self.commands > MAX_COMMANDS {
            return Err(format!(
                "more than {MAX_COMMANDS} commands in one command line: split it across several calls"
            ));
        }
        Ok((words, targets))
    }

    fn pipeline(&mut self) -> Result<Pipeline, String> {
        let mut simple = vec![self.simple()?];
        while self.peek() == Some(&Token::Pipe) {
            self.pos += 1;
            self.skip_newlines();
            simple.push(self.simple()?);
        }
        let piped = simple.len() > 1;
        simple
            .into_iter()
            .map(|(words, targets)| {
                Ok(Command {
                    kind: classify(&words, piped)?,
                    targets,
                })
            })
            .collect()
    }

    fn and_or(&mut self) -> Result<AndOr, String> {
        let first = self.pipeline()?;
        let mut rest = Vec::new();
        loop {
            let connector = match self.peek() {
                Some(Token::And) => Connector::And,
                Some(Token::Or) => Connector::Or,
                _ => break,
            };
            self.pos += 1;
            self.skip_newlines();
            rest.push((connector, self.pipeline()?));
        }
        Ok(AndOr { first, rest })
    }

    fn line(&mut self) -> Result<Vec<AndOr>, String> {
        let mut lists = Vec::new();
        self.skip_newlines();
        while self.peek().is_some() {
            lists.push(self.and_or()?);
            match self.peek() {
                None => break,
                Some(Token::Semi | Token::Newline) => {
                    self.pos += 1;
                    self.skip_newlines();
                }
                Some(_) => return Err(self.syntax_error()),
            }
        }
        Ok(lists)
    }
}

fn parse(tokens: &[Token]) -> Result<Vec<AndOr>, String> {
    let mut parser = Parser {
        tokens,
        pos: 0,
        commands: 0,
        redirections: 0,
    };
    let line = parser.line()?;
    if line.is_empty() {
        return Err("empty command".into());
    }
    Ok(line)
}

/// Whether `word` names a descriptor for `>&` and `<&` (digits, `-` to
/// close, digits and `-` to move), as the shell reads it after quote
/// removal.
fn is_descriptor(word: &str) -> bool {
    let digits = word.strip_suffix('-').unwrap_or(word);
    digits.bytes().all(|b| b.is_ascii_digit()) && (word == "-" || !digits.is_empty())
}

/// The files the redirection `op target` opens, added to `targets`.
fn redirection(
    op: Redir,
    numbered: bool,
    text: &str,
    target: &str,
    targets: &mut Vec<Target>,
) -> Result<(), String> {
    match op {
        Redir::DupIn | Redir::DupOut if is_descriptor(target) => return Ok(()),
        // Bash reads `>&FILE` as `&>FILE`, but expands `FILE` a second
        // time (`>&'$HOME/x'` writes in the home directory); with a
        // number before it, or after `<&`, a file name is an error.
        Redir::DupOut if !numbered => {
            return Err(format!(
                "bash expands the file name of `>&{target}` a second time: write `&>{target}` instead"
            ));
        }
        Redir::DupIn | Redir::DupOut => {
            return Err(format!(
                "`N{text}{target}`: after a descriptor number, `{text}` takes a descriptor, not a file: write `N{}{target}` for the file",
                text.get(..1).unwrap_or_default()
            ));
        }
        Redir::In | Redir::Out | Redir::ReadWrite => {}
    }
    if target.is_empty() {
        return Err(format!("`{text}` has an empty file name after it"));
    }
    if target.starts_with("/dev/tcp/") || target.starts_with("/dev/udp/") {
        return Err(format!(
            "bash opens a network connection for `{target}`: use a program for that (such as `curl`)"
        ));
    }
    if target == "/dev/null" {
        return Ok(());
    }
    match op {
        Redir::In => targets.push(Target::Read(target.to_owned())),
        Redir::ReadWrite => {
            targets.push(Target::Read(target.to_owned()));
            targets.push(Target::Write(target.to_owned()));
        }
        Redir::Out | Redir::DupOut | Redir::DupIn => targets.push(Target::Write(target.to_owned())),
    }
    Ok(())
}

// ---------------------------------------------------------------------
// What a command runs

/// Words that start a compound command (or negate a pipeline) where a
/// command name is expected.
const RESERVED: &[&str] = &[
    "!", "[[", "]]", "{", "}", "case", "coproc", "do", "done", "elif", "else", "esac", "fi", "for",
    "function", "if", "in", "select", "then", "time", "until", "while",
];

/// Builtins without a program of the same name, or that change the shell
/// itself (its variables, options, aliases, program lookup, descriptors,
/// jobs), which the kernel cannot follow into the rest of the line.
const SHELL_BUILTINS: &[&str] = &[
    ":",
    "alias",
    "bg",
    "bind",
    "break",
    "caller",
    "compgen",
    "complete",
    "compopt",
    "continue",
    "declare",
    "dirs",
    "disown",
    "enable",
    "exit",
    "export",
    "fg",
    "getopts",
    "hash",
    "help",
    "history",
    "jobs",
    "let",
    "local",
    "logout",
    "mapfile",
    "popd",
    "pushd",
    "read",
    "readarray",
    "readonly",
    "return",
    "set",
    "shift",
    "shopt",
    "suspend",
    "times",
    "type",
    "typeset",
    "ulimit",
    "umask",
    "unalias",
    "unset",
    "wait",
];

/// Builtins (and the programs some systems have of the same names) that
/// run their arguments as shell code or bypass the shell's lookup.
const CODE_RUNNERS: &[&str] = &[
    ".", "builtin", "command", "eval", "exec", "fc", "source", "trap",
];

/// Shells whose `-c SCRIPT` and `-lc SCRIPT` are decided as `SCRIPT`:
/// they read the literal subset of the language as bash does, given the
/// refusals above (descriptor numbers over 9, which dash reads as words;
/// what zsh reads otherwise).
const SCRIPT_SHELLS: &[&str] = &["bash", "dash", "sh", "zsh"];

/// Directories a shell given by its path may be in for its script to be
/// decided in its place.
const SYSTEM_BIN: &[&str] = &["/bin/", "/usr/bin/"];

/// Shells: given anything but `-c SCRIPT` (a script file, standard input,
/// options), they run shell code the kernel does not see.
const SHELLS: &[&str] = &[
    "ash", "bash", "busybox", "csh", "dash", "fish", "ksh", "ksh93", "mksh", "pdksh", "posh",
    "rbash", "sh", "tcsh", "toybox", "yash", "zsh",
];

/// Programs whose work is to start another program named in their
/// arguments (as another user, with another environment, detached, traced,
/// repeated, or built from input).
const LAUNCHERS: &[&str] = &[
    "bwrap",
    "catchsegv",
    "cgexec",
    "chroot",
    "chrt",
    "doas",
    "env",
    "fakeroot",
    "firejail",
    "flock",
    "ionice",
    "ltrace",
    "nice",
    "nohup",
    "nsenter",
    "numactl",
    "parallel",
    "pkexec",
    "prlimit",
    "proot",
    "run0",
    "runuser",
    "script",
    "setpriv",
    "setsid",
    "sg",
    "stdbuf",
    "strace",
    "su",
    "sudo",
    "systemd-run",
    "taskset",
    "time",
    "unbuffer",
    "unshare",
    "watch",
    "xargs",
];

/// `find` actions that run a program per file.
const FIND_EXEC: &[&str] = &["-exec", "-execdir", "-ok", "-okdir"];

/// Most programs one simple command decomposes into (`timeout` nested in
/// `timeout` ..).
const MAX_NESTED: usize = 8;

/// Whether `word`, as a command's first word, is a variable assignment.
fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else {
        return false;
    };
    let name = name.strip_suffix('+').unwrap_or(name);
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What the simple command `words` does (`piped`: it is one of several in
/// a pipeline, so run in a subshell), or why it is refused.
fn classify(words: &[String], piped: bool) -> Result<Kind, String> {
    let Some((name, args)) = words.split_first() else {
        return Err(
            "a redirection without a command (zsh runs `cat` or a pager for it): give the command, such as `truncate -s 0 FILE`"
                .into(),
        );
    };
    if name.is_empty() {
        return Err("the program name is empty".into());
    }
    if is_assignment(name) {
        return Err(format!(
            "`{name}` sets a variable, and the kernel does not decide environment changes: run the command without it"
        ));
    }
    if name == "!" {
        return Err("`!` inverts the command's status: run the command without it".into());
    }
    if RESERVED.contains(&name.as_str()) {
        return Err(format!(
            "`{name}` starts a compound command, which is not supported: run each command on its own, joined with `&&`, `||` or `;`"
        ));
    }
    if let Some(script) = shell_script(words) {
        return script.map(|script| Kind::Script(script.to_owned()));
    }
    if !name.contains('/') {
        if name == "cd" {
            return cd(args, piped);
        }
        if SHELL_BUILTINS.contains(&name.as_str()) {
            return Err(format!(
                "`{name}` is a shell builtin the kernel does not decide (it may change how the rest of the line runs): leave it out"
            ));
        }
        if name == "printf" && args.first().is_some_and(|arg| arg.starts_with("-v")) {
            return Err(
                "`printf -v` sets a shell variable: print the value instead, without `-v`".into(),
            );
        }
    }
    programs(words).map(Kind::Run)
}

/// The script of `argv` when it is a shell given exactly `-c SCRIPT` or
/// `-lc SCRIPT` (`bash`, `dash`, `sh`, `zsh`), whose effect is the script's; an
/// error when that shell is not the system's (a bare name, or directly in
/// `/bin` or `/usr/bin`) but a program of that name the agent placed (`./bash`);
/// `None` for any other argument vector.
pub fn shell_script(argv: &[String]) -> Option<Result<&str, String>> {
    let [name, flag, script] = argv else {
        return None;
    };
    if !matches!(flag.as_str(), "-c" | "-lc")
        || !SCRIPT_SHELLS.contains(&basename(name).to_ascii_lowercase().as_str())
    {
        return None;
    }
    // The shell itself is not decided, only its script.
    let system = !name.contains('/')
        || SYSTEM_BIN.iter().any(|dir| {
            name.strip_prefix(dir)
                .is_some_and(|rest| !rest.contains('/'))
        });
    Some(if system {
        Ok(script)
    } else {
        Err(format!(
            "`{name}` is not the system's shell: write `{} -c ..`, or run the commands directly",
            basename(name)
        ))
    })
}

/// The command line that runs exactly `argv`: each word in single quotes
/// (a `'` in a word as `'\''`), which [`command_actions`] reads back as
/// these words.
pub fn quote(argv: &[String]) -> String {
    argv.iter()
        .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cd DIR`: followed, if the directory is known without the shell's
/// help (no `CDPATH` search, no `$HOME`, no `-`).
fn cd(args: &[String], piped: bool) -> Result<Kind, String> {
    if piped {
        return Err("`cd` in a pipeline changes nothing: use `cd DIR && COMMAND`".into());
    }
    let [dir] = args else {
        return Err("give `cd` exactly one directory, as in `cd /abs/dir && COMMAND`".into());
    };
    if dir.is_empty() || dir.starts_with('-') {
        return Err(format!("`cd {dir}`: give a directory path"));
    }
    let explicit = dir.starts_with('/')
        || dir == "."
        || dir == ".."
        || dir.starts_with("./")
        || dir.starts_with("../");
    if !explicit {
        return Err(format!(
            "`cd {dir}` may search `CDPATH`: write `cd ./{dir}` or an absolute path"
        ));
    }
    Ok(Kind::Cd(dir.clone()))
}

/// The last path component of a program name.
pub fn basename(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// The programs `argv` runs: itself, and for `timeout` also the program
/// it starts; or why it is refused.
fn programs(argv: &[String]) -> Result<Vec<Vec<String>>, String> {
    let mut runs = Vec::new();
    let mut argv = argv;
    while let Some((program, args)) = argv.split_first() {
        if runs.len() >= MAX_NESTED {
            return Err(format!(
                "more than {MAX_NESTED} programs nested in one command: run the inner one directly"
            ));
        }
        let shown = basename(program);
        // Compared without case: on a file system that ignores case, `BASH`
        // finds `bash`.
        let lower = shown.to_ascii_lowercase();
        let name = lower.as_str();
        if CODE_RUNNERS.contains(&name) {
            return Err(format!(
                "`{shown}` runs its arguments as shell code, which the kernel cannot see: run the command directly"
            ));
        }
        if SHELLS.contains(&name) {
            return Err(format!(
                "`{shown}` runs shell code the kernel cannot see: run the commands directly, or as `{shown} -c 'COMMANDS'`"
            ));
        }
        if name == "env" && args.is_empty() {
            // Only prints the environment.
        } else if LAUNCHERS.contains(&name) {
            return Err(format!(
                "`{shown}` starts another program the kernel would not see: run that program directly, without `{shown}`"
            ));
        }
        if name == "find" && args.iter().any(|arg| FIND_EXEC.contains(&arg.as_str())) {
            return Err(
                "`find -exec` runs a program per file: list the files with `find`, then run the program on them"
                    .into(),
            );
        }
        runs.push(argv.to_vec());
        argv = if name == "timeout" {
            match timeout_program(args)? {
                Some(start) => args.get(start..).unwrap_or_default(),
                None => &[],
            }
        } else {
            &[]
        };
    }
    Ok(runs)
}

/// Where, in `timeout`'s arguments, the program it starts begins (`None`
/// when there is none: `timeout` then fails without starting anything).
/// Options as GNU coreutils (`getopt` with `+k:s:v`, which stops at the
/// first operand) and BusyBox read them; any other option is refused
/// rather than guessed.
fn timeout_program(args: &[String]) -> Result<Option<usize>, String> {
    let mut i = 0;
    loop {
        let Some(arg) = args.get(i) else {
            return Ok(None);
        };
        match arg.as_str() {
            "-v" | "--verbose" | "--foreground" | "--preserve-status" => i += 1,
            "-k" | "-s" => i += 2,
            arg if arg.starts_with("-k")
                || arg.starts_with("-s")
                || arg.starts_with("--kill-after=")
                || arg.starts_with("--signal=") =>
            {
                i += 1;
            }
            arg if arg.starts_with('-') => {
                return Err(format!(
                    "`timeout {arg}`: only `-k`, `-s`, `-v`, `--foreground` and `--preserve-status` are understood before the duration; run the program without `timeout` or with those options"
                ));
            }
            // The duration; the program follows it.
            _ => return Ok(Some(i + 1).filter(|&start| start < args.len())),
        }
    }
}

// ---------------------------------------------------------------------
// Actions

/// `path` as seen from `cwd` (joined when relative and `cwd` is known).
fn join(cwd: Option<&str>, path: &str) -> String {
    match cwd {
        Some(cwd) if !path.starts_with('/') => {
            if cwd.ends_with('/') {
                format!("{cwd}{path}")
            } else {
                format!("{cwd}/{path}")
            }
        }
        _ => path.to_owned(),
    }
}

fn push_unique<T: PartialEq>(items: &mut Vec<T>, item: T) {
    if !items.contains(&item) {
        items.push(item);
    }
}

/// The actions of `line` run from `cwd`. The directories a command may run
/// in are followed through `cd`: a command gets its actions once for every
/// directory it may run in, given which earlier commands may have
/// succeeded or failed.
fn plan(
    line: &[AndOr],
    cwd: Option<&str>,
    depth: usize,
    budget: &mut usize,
) -> Result<Vec<Action>, String> {
    let mut actions = Vec::new();
    // Where each and-or list may start.
    let mut starts: Vec<Option<String>> = vec![cwd.map(str::to_owned)];
    for list in line {
        // Where the shell may be, and whether the last pipeline run there
        // may have succeeded (`true`) or failed (`false`).
        let mut states = run(&list.first, &starts, &mut actions, depth, budget)?;
        for (connector, pipeline) in &list.rest {
            let mut runners = Vec::new();
            let mut skipped = Vec::new();
            for (dir, ok) in states {
                if ok == (*connector == Connector::And) {
                    push_unique(&mut runners, dir);
                } else {
                    push_unique(&mut skipped, (dir, ok));
                }
            }
            states = run(pipeline, &runners, &mut actions, depth, budget)?;
            for state in skipped {
                push_unique(&mut states, state);
            }
        }
        starts = Vec::new();
        for (dir, _) in states {
            push_unique(&mut starts, dir);
        }
    }
    Ok(actions)
}

/// Adds the actions of `pipeline` run from each of `dirs` to `actions`;
/// returns the states it may leave the shell in.
fn run(
    pipeline: &Pipeline,
    dirs: &[Option<String>],
    actions: &mut Vec<Action>,
    depth: usize,
    budget: &mut usize,
) -> Result<Vec<(Option<String>, bool)>, String> {
    // Each command's actions, once per directory it may run in: an action
    // the same command already has from another directory (an absolute
    // file name) is not repeated; everything else is, one per redirection
    // and program, as the shell performs them.
    let mut these: Vec<(usize, Action)> = Vec::new();
    let mut states = Vec::new();
    for dir in dirs {
        let dir_str = dir.as_deref();
        let earlier = these.len();
        let add = |these: &mut Vec<(usize, Action)>, item: (usize, Action)| {
            if !these.get(..earlier).unwrap_or_default().contains(&item) {
                these.push(item);
            }
        };
        for (index, command) in pipeline.iter().enumerate() {
            for target in &command.targets {
                let action = match target {
                    Target::Read(path) => Action::file_read(join(dir_str, path)),
                    Target::Write(path) => Action::file_write_descriptor(join(dir_str, path)),
                };
                add(&mut these, (index, action));
            }
            match &command.kind {
                Kind::Run(runs) => {
                    for argv in runs {
                        if let Some((program, args)) = argv.split_first() {
                            let mut exec = Exec::new(program.clone()).args(args.iter().cloned());
                            exec.cwd = dir.clone();
                            add(&mut these, (index, Action::Exec(exec)));
                        }
                    }
                }
                Kind::Script(script) => {
                    for action in decompose(script, dir_str, depth + 1, budget)? {
                        add(&mut these, (index, action));
                    }
                }
                Kind::Cd(_) => {}
            }
            if actions.len() + these.len() > MAX_ACTIONS {
                return Err(format!(
                    "the command line decomposes into more than {MAX_ACTIONS} actions: split it across several calls"
                ));
            }
        }
        match pipeline.as_slice() {
            [
                Command {
                    kind: Kind::Cd(to), ..
                },
            ] => {
                push_unique(&mut states, (Some(join(dir_str, to)), true));
                push_unique(&mut states, (dir.clone(), false));
            }
            _ => {
                push_unique(&mut states, (dir.clone(), true));
                push_unique(&mut states, (dir.clone(), false));
            }
        }
    }
    actions.extend(these.into_iter().map(|(_, action)| action));
    Ok(states)
}

#[cfg(test)]
mod tests {
    #![expect(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::panic,
        reason = "tests"
    )]
    use super::*;

    fn exec(argv: &[&str], cwd: &str) -> Action {
        let (program, args) = argv.split_first().unwrap();
        Action::Exec(Exec::new(*program).args(args.iter().copied()).cwd(cwd))
    }

    fn actions(command: &str) -> Vec<Action> {
        command_actions(command, Some("/w")).unwrap_or_else(|e| panic!("refused {command:?}: {e}"))
    }

    #[test]
    fn plain_commands_become_their_argument_vector() {
        assert_eq!(actions("ls -la"), [exec(&["ls", "-la"], "/w")]);
        assert_eq!(
            actions(r#"git commit -m "fix: a; b | c""#),
            [exec(&["git", "commit", "-m", "fix: a; b | c"], "/w")]
        );
        assert_eq!(
            actions(r"echo 'a $b' c\ d"),
            [exec(&["echo", "a $b", "c d"], "/w")]
        );
        assert_eq!(actions("echo a=b"), [exec(&["echo", "a=b"], "/w")]);
        assert_eq!(
            actions(r#"printf "%s\n" "a\b" "\$x" '' """#),
            [exec(&["printf", r"%s\n", r"a\b", "$x", "", ""], "/w")]
        );
        assert_eq!(
            actions("git diff HEAD~1 -- a.txt"),
            [exec(&["git", "diff", "HEAD~1", "--", "a.txt"], "/w")]
        );
        assert_eq!(
            command_actions("ls", None).unwrap(),
            [Action::Exec(Exec::new("ls"))]
        );
    }

    #[test]
    fn what_agents_write_is_decomposed() {
        assert_eq!(
            actions("cargo test 2>&1 | tail -30"),
            [exec(&["cargo", "test"], "/w"), exec(&["tail", "-30"], "/w")]
        );
        assert_eq!(
            actions("cargo fmt && cargo clippy"),
            [
                exec(&["cargo", "fmt"], "/w"),
                exec(&["cargo", "clippy"], "/w")
            ]
        );
        assert_eq!(
            actions(r#"git add -A && git commit -m "x""#),
            [
                exec(&["git", "add", "-A"], "/w"),
                exec(&["git", "commit", "-m", "x"], "/w")
            ]
        );
        assert_eq!(
            actions("grep -rn foo src | head"),
            [
                exec(&["grep", "-rn", "foo", "src"], "/w"),
                exec(&["head"], "/w")
            ]
        );
        assert_eq!(
            actions("make > build.log 2>&1 || cat build.log >&2"),
            [
                Action::file_write_descriptor("/w/build.log"),
                exec(&["make"], "/w"),
                exec(&["cat", "build.log"], "/w"),
            ]
        );
        assert_eq!(
            actions("sort < in.txt >> /tmp/out 2>/dev/null; wc -l <>rw &> both"),
            [
                Action::file_read("/w/in.txt"),
                Action::file_write_descriptor("/tmp/out"),
                exec(&["sort"], "/w"),
                Action::file_read("/w/rw"),
                Action::file_write_descriptor("/w/rw"),
                Action::file_write_descriptor("/w/both"),
                exec(&["wc", "-l"], "/w"),
            ]
        );
        assert_eq!(
            actions("a |& b\n\nc 2> err &>out"),
            [
                exec(&["a"], "/w"),
                exec(&["b"], "/w"),
                Action::file_write_descriptor("/w/err"),
                Action::file_write_descriptor("/w/out"),
                exec(&["c"], "/w"),
            ]
        );
    }

    #[test]
    fn descriptor_numbers_are_read_as_bash_reads_them() {
        // Unquoted digits right before the operator name a descriptor;
        // quoted digits, digits after a blank, and numbers too large for an
        // `int` are arguments.
        for (command, argv) in [
            ("echo 2>f", &["echo"][..]),
            ("echo 2 >f", &["echo", "2"]),
            (r#"echo "2">f"#, &["echo", "2"]),
            ("echo a2>f", &["echo", "a2"]),
            ("echo 2147483648 >f", &["echo", "2147483648"]),
            ("echo 2&>f", &["echo", "2"]),
        ] {
            assert_eq!(
                actions(command),
                [Action::file_write_descriptor("/w/f"), exec(argv, "/w")],
                "{command}"
            );
        }
        // Duplications and closings touch no file, whatever the quoting.
        assert_eq!(
            actions(r#"echo 1>&"2" 3<&0 4>&- 5>&3- >&2"#),
            [exec(&["echo"], "/w")]
        );
        // After `>&` and `<&` a `-` stands alone: what follows is a word.
        assert_eq!(
            actions("echo a >&-b <&-c 2>& -1 3>&\\\n-d"),
            [exec(&["echo", "a", "b", "c", "1", "d"], "/w")]
        );
        // `>&FILE` expands `FILE` twice: refused, as are file names
        // after `N>&` and `<&` (errors of the shell).
        for refused in [
            r#"echo a >&"-"b"#,
            "echo a >&2-c",
            "echo x >&'$HOME/.bashrc'",
            "echo x >&'~'",
            "echo x >&out",
            "echo 2>&f",
        ] {
            assert!(command_actions(refused, Some("/w")).is_err(), "{refused}");
        }
        // A descriptor to bash, a word to dash.
        for refused in ["echo 10>f", "echo 2147483648>f", "echo 00<f"] {
            assert!(command_actions(refused, Some("/w")).is_err(), "{refused}");
        }
        assert!(command_actions("cat <&f", Some("/w")).is_err());
    }

    #[test]
    fn cd_moves_the_commands_after_it() {
        assert_eq!(
            actions("cd /p && cargo test > out"),
            [
                Action::file_write_descriptor("/p/out"),
                exec(&["cargo", "test"], "/p")
            ]
        );
        assert_eq!(actions("cd ./sub && ls"), [exec(&["ls"], "/w/./sub")]);
        // After `;` the next command runs whether `cd` worked or not.
        assert_eq!(
            actions("cd /p; ls"),
            [exec(&["ls"], "/p"), exec(&["ls"], "/w")]
        );
        // After `||` it runs only where `cd` failed.
        assert_eq!(actions("cd /p || ls"), [exec(&["ls"], "/w")]);
        assert_eq!(
            actions("cd /p && a || b"),
            [exec(&["a"], "/p"), exec(&["b"], "/p"), exec(&["b"], "/w")]
        );
        for refused in [
            "cd",
            "cd src && ls",
            "cd ~ && ls",
            "cd - && ls",
            "cd a b",
            "cd /p | ls",
            "cd /p",
        ] {
            assert!(command_actions(refused, Some("/w")).is_err(), "{refused}");
        }
    }

    #[test]
    fn a_shell_given_a_script_is_decided_as_the_script() {
        assert_eq!(
            actions("bash -c 'touch made.txt'"),
            [exec(&["touch", "made.txt"], "/w")]
        );
        assert_eq!(
            actions(r#"cd /p && /bin/bash -lc "cargo test 2>&1 | tail -3" > log"#),
            [
                Action::file_write_descriptor("/p/log"),
                exec(&["cargo", "test"], "/p"),
                exec(&["tail", "-3"], "/p")
            ]
        );
        // A `cd` in the script stays in the script.
        assert_eq!(
            actions(r#"sh -c "cd ./sub && ls" && ls"#),
            [exec(&["ls"], "/w/./sub"), exec(&["ls"], "/w")]
        );
        assert_eq!(
            actions(r#"bash -c "sh -c 'dash -c ls'""#),
            [exec(&["ls"], "/w")]
        );
        assert!(
            command_actions(r#"bash -c "sh -c 'dash -c \"zsh -c ls\"'""#, Some("/w"))
                .unwrap_err()
                .contains("too deeply")
        );
    }

    #[test]
    fn timeout_is_decomposed_when_its_options_are_understood() {
        assert_eq!(
            actions("timeout 60 cargo test"),
            [
                exec(&["timeout", "60", "cargo", "test"], "/w"),
                exec(&["cargo", "test"], "/w")
            ]
        );
        assert_eq!(
            actions("timeout -k 5 -sKILL --foreground 1m rm -v x"),
            [
                exec(
                    &[
                        "timeout",
                        "-k",
                        "5",
                        "-sKILL",
                        "--foreground",
                        "1m",
                        "rm",
                        "-v",
                        "x"
                    ],
                    "/w"
                ),
                exec(&["rm", "-v", "x"], "/w")
            ]
        );
        assert_eq!(actions("timeout 5"), [exec(&["timeout", "5"], "/w")]);
        for refused in [
            "timeout --kill 5 1 ls",
            "timeout 5 bash -c 'rm x'",
            "timeout 5 sudo rm x",
            "timeout -- 5 ls",
            "BASH script.sh",
            "/bin/Sudo rm x",
            "TIMEOUT 5 Env ls",
        ] {
            assert!(command_actions(refused, Some("/w")).is_err(), "{refused}");
        }
    }

    #[test]
    fn anything_the_shell_would_do_more_with_is_refused() {
        for command in [
            "sleep 1 &",
            "ls & rm x",
            "(rm x)",
            "{ rm x; }",
            "echo $(rm x)",
            "echo `rm x`",
            r#"echo "$(rm x)""#,
            r#"echo "`rm x`""#,
            "echo $HOME",
            "echo ${HOME}",
            "echo $((1+1))",
            "echo $'a'",
            "rm *",
            "rm a?",
            "rm [ab]",
            "[ -f x ]",
            "ls ~",
            "ls ~/x",
            "echo x=~/a",
            "echo x=a:~/b",
            "echo {a,b}",
            "git show @{1}",
            "FOO=1 ls",
            "FOO+=1 ls",
            "# nothing",
            "ls # comment",
            "cat <<EOF\nx\nEOF",
            "cat <<< x",
            "diff <(ls) b",
            "tee >(cat) x",
            "f() { ls; }",
            "function f",
            "if true; then ls; fi",
            "for x in a; do ls; done",
            "! ls",
            "time ls",
            "eval ls",
            "exec ls",
            "source x",
            ". x",
            "sh script.sh",
            "zsh",
            "bash -x -c 'rm x'",
            "bash -c 'rm x' name arg",
            "sh -ec 'rm x'",
            "bash --norc -c 'rm x'",
            "ksh -c 'rm x'",
            "bash -c",
            "bash -c 'echo $HOME'",
            "sh -c 'rm *'",
            "bash -c 'ls; bash -c \"sh -c ls &\"'",
            "./bash -c ls",
            "/tmp/sh -c ls",
            "/usr/bin/../../tmp/bash -c ls",
            "bin/zsh -c ls",
            "xargs rm",
            "env FOO=1 ls",
            "env ls",
            "sudo ls",
            "nohup ls",
            "nice ls",
            "/usr/bin/time ls",
            "command ls",
            "builtin cd /",
            "trap 'rm x' EXIT",
            "find . -name x -exec rm {} ;",
            "find . -name x -delete -execdir rm ;",
            "export PATH=/tmp",
            "alias ls=rm",
            "hash -p /tmp/x ls",
            "read PATH < f",
            "printf -v PATH x",
            "echo x > /dev/tcp/example.com/80",
            "cat < /dev/udp/1.2.3.4/53",
            "echo a\r",
            "=ls",
            "ls ;; x",
            "ls; ; x",
            "| ls",
            "ls |",
            "ls &&",
            "ls >",
            "ls > ''",
            "",
            "   ",
            "\n\n",
            "2>&1",
            ">/dev/null",
            "> f",
            "< f",
            "ls; > f",
            "echo x >!f",
            "echo x >>!f",
            "cat <1-5> out",
            "cat <-> out",
            "echo 'unterminated",
            "echo \"unterminated",
            "echo trailing\\",
            "ls\0",
        ] {
            assert!(
                command_actions(command, Some("/w")).is_err(),
                "accepted {command:?}: {:?}",
                command_actions(command, Some("/w"))
            );
        }
    }

    #[test]
    fn reasons_say_what_to_write_instead() {
        let reason = |command: &str| command_actions(command, Some("/w")).unwrap_err();
        assert!(
            reason("rm *.rs").contains("`*.rs`"),
            "{}",
            reason("rm *.rs")
        );
        assert!(reason("bash script.sh").contains("`bash -c 'COMMANDS'`"));
        assert!(reason("echo $HOME").contains("`$HOME`"));
        assert!(reason("timeout 5 sudo ls").contains("without `sudo`"));
        assert!(reason("cd src && ls").contains("cd ./src"));
    }

    #[test]
    fn limits_are_enforced() {
        let many = vec!["true"; MAX_COMMANDS + 1].join(" && ");
        assert!(
            command_actions(&many, Some("/w"))
                .unwrap_err()
                .contains("commands")
        );
        let fits = vec!["true"; MAX_COMMANDS].join(" && ");
        assert_eq!(
            command_actions(&fits, Some("/w")).unwrap().len(),
            MAX_COMMANDS
        );
        let redirections = format!("true{}", " >/dev/null".repeat(MAX_REDIRECTIONS + 1));
        assert!(
            command_actions(&redirections, Some("/w"))
                .unwrap_err()
                .contains("redirections")
        );
        let long = format!("echo {}", "a".repeat(MAX_COMMAND_BYTES));
        assert!(
            command_actions(&long, Some("/w"))
                .unwrap_err()
                .contains("bytes")
        );
        // Many `cd`s and `;` multiply the directories a command may run
        // in; the count of actions is bounded.
        let cds = (0..30)
            .map(|i| format!("cd /d{i}; ls"))
            .collect::<Vec<_>>()
            .join("; ");
        assert!(
            command_actions(&cds, Some("/w"))
                .unwrap_err()
                .contains("actions")
        );
        let nested = format!("{}ls", "timeout 1 ".repeat(MAX_NESTED + 1));
        assert!(command_actions(&nested, Some("/w")).is_err());
        // A script is read once per directory its shell may start in; all
        // the reading together is bounded.
        let cds = (0..11).map(|i| format!("cd /d{i}; ")).collect::<String>();
        let script = format!("echo {}", "a".repeat(20_000));
        assert_eq!(
            command_actions(&format!("{cds}bash -c '{script}'"), Some("/w"))
                .unwrap()
                .len(),
            12
        );
        let cds = (0..13).map(|i| format!("cd /d{i}; ")).collect::<String>();
        assert!(
            command_actions(&format!("{cds}bash -c '{script}'"), Some("/w"))
                .unwrap_err()
                .contains("too large")
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(1024))]

        /// Any argument vector, quoted for the shell, is parsed back to
        /// exactly itself: what is decided is what the shell would run.
        #[test]
        fn quoted_argument_vectors_round_trip(
            argv in proptest::collection::vec("[a-zA-Z0-9_./=:,+@%-]{1,12}|[ -~\t\n]{0,12}", 1..6)
        ) {
            // A program name is a plain word.
            let mut argv = argv;
            argv[0] = "prog".to_owned();
            let command = quote(&argv);
            let mut expected = Exec::new("prog").args(argv[1..].iter().cloned());
            expected.cwd = Some("/w".into());
            proptest::prop_assert_eq!(
                command_actions(&command, Some("/w")).unwrap(),
                vec![Action::Exec(expected)]
            );
        }

        /// Whatever the input, decomposing never panics; an accepted line
        /// has nothing a shell would act on beyond what was decomposed, as
        /// an independent scanner of shell quoting sees it: no expansion,
        /// substitution, pattern, group or background job, and as many
        /// programs as it has commands. The inputs are built from shell
        /// tokens, so that quoting, escapes and operators meet often.
        #[test]
        fn anything_a_shell_would_act_on_is_decomposed_or_refused(
            command in proptest::strategy::Strategy::prop_map(
                proptest::collection::vec(
                    proptest::prop_oneof![
                        // Words and blanks, often, so that lines are
                        // accepted often enough to check them.
                        6 => proptest::sample::select(&["ls", "a.txt", "-l", "2", "-", " ", " ", "\t"][..]),
                        3 => proptest::sample::select(&["'", "\"", "\\", ";", "|", "&&", ">", "<", "\n", "&"][..]),
                        1 => proptest::sample::select(&["$", "`", "(", "*", "~", "{", "#", "=", "?", "["][..]),
                    ],
                    0..16,
                ),
                |tokens: Vec<&str>| tokens.concat(),
            )
        ) {
            if let Ok(actions) = command_actions(&command, Some("/w")) {
                proptest::prop_assert!(!actions.is_empty());
                let model = ShellModel::scan(&command);
                proptest::prop_assert!(
                    model.active.iter().all(|c| !matches!(c, '$' | '`' | '(' | ')' | '*' | '?' | '[' | '{' | '}')),
                    "accepted {command:?} although a shell acts on {:?}", model.active
                );
                proptest::prop_assert!(!model.background, "accepted a background job in {command:?}");
                let execs = actions.iter().filter(|a| matches!(a, Action::Exec(_))).count();
                proptest::prop_assert_eq!(
                    execs, model.commands_with_words,
                    "{:?}: {:?} against {:?}", command, actions, model
                );
                let files = actions.len() - execs;
                proptest::prop_assert!(
                    files >= model.file_redirections,
                    "{:?}: {:?} against {:?}", command, actions, model
                );
            }
        }

        /// Parsing is total: whatever the line (shell words, quoting,
        /// operators, keywords, launchers, nested shells, stray
        /// characters), decomposing answers without panicking, and the
        /// answer holds together: a refusal says why; an acceptance has
        /// one to [`MAX_ACTIONS`] actions in which, the directory being
        /// known, every program runs in an absolute directory and every
        /// file has an absolute path (a policy never sees a path relative
        /// to nothing); and the same line gets the same answer again.
        #[test]
        fn decomposing_is_total(command in shell_text()) {
            let answer = command_actions(&command, Some("/w"));
            match &answer {
                Err(why) => proptest::prop_assert!(!why.is_empty(), "{command:?}: a refusal without a reason"),
                Ok(actions) => {
                    proptest::prop_assert!(
                        (1..=MAX_ACTIONS).contains(&actions.len()),
                        "{command:?}: {} actions", actions.len()
                    );
                    for action in actions {
                        // A command line runs programs and opens files,
                        // nothing else.
                        let anchored = match action {
                            Action::Exec(exec) => exec.cwd.as_deref().is_some_and(|cwd| cwd.starts_with('/')),
                            Action::FileRead { path }
                            | Action::FileWrite { path, .. }
                            | Action::FileDelete { path } => path.starts_with('/'),
                            _ => false,
                        };
                        proptest::prop_assert!(anchored, "{command:?}: {action:?} is not a program or file anchored at /w");
                    }
                }
            }
            proptest::prop_assert_eq!(command_actions(&command, Some("/w")), answer, "{:?} answered differently twice", command);
            let _ = command_actions(&command, None);
        }
    }

    /// Lines of shell: mostly the pieces the parser must take apart
    /// (words, blanks, quoting, operators, redirections, `cd`, keywords,
    /// launchers, nested shells, expansions), now and then any character
    /// at all.
    fn shell_text() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        const WORDS: &[&str] = &[
            "ls", "cat", "echo", "git", "a.txt", "dir/b", "/tmp/f", "..", ".", "-l", "--x=1", "2",
        ];
        const BLANKS: &[&str] = &[" ", " ", "\t", " \\\n"];
        const QUOTING: &[&str] = &["'", "\"", "\\", "'a b'", "\"c d\"", "\\ "];
        const OPERATORS: &[&str] = &[
            ";", "|", "||", "&&", "&", "|&", "\n", ">", ">>", "<", "2>&1", ">&2", "<<<", "<<",
            "<>", "&>", "2>", "3<",
        ];
        const SHELL: &[&str] = &[
            "cd", "cd ..", "cd /", "if", "then", "fi", "for", "do", "done", "!", "export", "env",
            "sudo", "xargs", "bash -c ", "sh -c ", "eval", "exec", "time", "nohup", "true", "read",
        ];
        const EXPANSIONS: &[&str] = &[
            "$", "`", "(", ")", "*", "~", "{", "}", "#", "=", "?", "[", "]", "$(ls)", "${X}",
            "$((1))", "X=1 ",
        ];
        proptest::collection::vec(
            prop_oneof![
                12 => proptest::sample::select(WORDS).prop_map(str::to_owned),
                8 => proptest::sample::select(BLANKS).prop_map(str::to_owned),
                2 => proptest::sample::select(QUOTING).prop_map(str::to_owned),
                3 => proptest::sample::select(OPERATORS).prop_map(str::to_owned),
                2 => proptest::sample::select(SHELL).prop_map(str::to_owned),
                1 => proptest::sample::select(EXPANSIONS).prop_map(str::to_owned),
                1 => any::<char>().prop_map(String::from),
            ],
            0..24,
        )
        .prop_map(|pieces| pieces.concat())
    }

    /// The lines [`decomposing_is_total`] checks take the parser past its
    /// first refusal: a fair share of them it accepts, and a fair share it
    /// refuses (so the property is not met by refusing everything early,
    /// nor by inputs too tame to refuse).
    #[test]
    fn the_total_parsing_property_reaches_into_the_parser() {
        use proptest::strategy::{Strategy, ValueTree};
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strategy = shell_text();
        let samples = 2000;
        let accepted = (0..samples)
            .filter(|_| {
                let line = strategy.new_tree(&mut runner).unwrap().current();
                command_actions(&line, Some("/w")).is_ok()
            })
            .count();
        assert!(
            (samples / 5..=samples * 4 / 5).contains(&accepted),
            "{accepted} of {samples} lines accepted"
        );
    }

    /// What a POSIX shell acts on in `command`, by an independent scan of
    /// its quoting: a reference model, independent of the parser.
    #[derive(Debug, Default)]
    struct ShellModel {
        /// Characters outside any quotes and not escaped, plus `$` and
        /// `` ` `` inside double quotes.
        active: Vec<char>,
        /// Whether an operator `&` stands alone (a background job).
        background: bool,
        /// Simple commands (between `;`, `|`, `|&`, `&&`, `||`, newlines)
        /// with a word that is not a redirection's target or descriptor
        /// number.
        commands_with_words: usize,
        /// Redirections whose target is not a descriptor.
        file_redirections: usize,
    }

    /// The shell's operators, longest first.
    const OPERATORS: &[&str] = &[
        "&>>", "<<<", "&&", "||", ";;", "|&", "&>", ">>", ">|", ">&", "<<", "<>", "<&", ";", "|",
        "&", "<", ">", "\n",
    ];

    impl ShellModel {
        fn scan(command: &str) -> Self {
            #[derive(PartialEq)]
            enum Quote {
                None,
                Single,
                Double,
            }
            // Each character, and whether the shell acts on it.
            let mut marked: Vec<(char, bool)> = Vec::new();
            let mut quote = Quote::None;
            let mut chars = command.chars();
            while let Some(c) = chars.next() {
                match (&quote, c) {
                    (Quote::None, '\\') => match chars.next() {
                        // A line continuation joins the word.
                        Some('\n') | None => {}
                        Some(next) => marked.push((next, false)),
                    },
                    (Quote::None, '\'') => {
                        quote = Quote::Single;
                        marked.push((c, false));
                    }
                    (Quote::None, '"') => {
                        quote = Quote::Double;
                        marked.push((c, false));
                    }
                    (Quote::None, c) => marked.push((c, true)),
                    (Quote::Single, '\'') | (Quote::Double, '"') => {
                        quote = Quote::None;
                        marked.push((c, false));
                    }
                    (Quote::Double, '\\') => {
                        let _ = chars.next();
                        marked.push((c, false));
                    }
                    (Quote::Double, '$' | '`') => marked.push((c, true)),
                    (_, c) => marked.push((c, false)),
                }
            }
            let mut model = Self {
                active: marked.iter().filter(|m| m.1).map(|m| m.0).collect(),
                ..Self::default()
            };
            // Words (with whether they are unquoted digits directly
            // before an operator) and operators.
            enum Piece {
                Word { digits_touching: bool },
                Op(&'static str),
            }
            let mut pieces = Vec::new();
            let mut word: Option<String> = None;
            let mut digits = true;
            let mut i = 0;
            while let Some(&(c, active)) = marked.get(i) {
                let op = OPERATORS.iter().find(|op| {
                    op.chars()
                        .enumerate()
                        .all(|(k, oc)| marked.get(i + k) == Some(&(oc, true)))
                });
                if active && (c == ' ' || c == '\t' || op.is_some()) {
                    if let Some(w) = word.take() {
                        let touching = op.is_some() && digits && w.parse::<i32>().is_ok();
                        pieces.push(Piece::Word {
                            digits_touching: touching,
                        });
                    }
                    digits = true;
                    if let Some(op) = op {
                        pieces.push(Piece::Op(op));
                        i += op.chars().count();
                        // Bash takes an unquoted `-` after `>&` or `<&`
                        // as a word by itself.
                        if matches!(*op, ">&" | "<&") {
                            let mut k = i;
                            while matches!(marked.get(k), Some((' ' | '\t', true))) {
                                k += 1;
                            }
                            if marked.get(k) == Some(&('-', true)) {
                                pieces.push(Piece::Word {
                                    digits_touching: false,
                                });
                                i = k + 1;
                            }
                        }
                        continue;
                    }
                } else {
                    digits &= active && c.is_ascii_digit();
                    word.get_or_insert_with(String::new).push(c);
                }
                i += 1;
            }
            if word.is_some() {
                pieces.push(Piece::Word {
                    digits_touching: false,
                });
            }
            let mut has_word = false;
            let mut redirect: Option<&str> = None;
            for (k, piece) in pieces.iter().enumerate() {
                match *piece {
                    Piece::Op(op) if op.contains(['<', '>']) => redirect = Some(op),
                    Piece::Op(op) => {
                        model.background |= op == "&";
                        model.commands_with_words += usize::from(has_word);
                        has_word = false;
                    }
                    Piece::Word { digits_touching } => {
                        if let Some(op) = redirect.take() {
                            // `>&WORD` and `<&WORD` may be descriptors.
                            model.file_redirections += usize::from(!op.ends_with('&'));
                        } else if !(digits_touching
                            && matches!(pieces.get(k + 1), Some(Piece::Op(op)) if op.starts_with(['<', '>'])))
                        {
                            has_word = true;
                        }
                    }
                }
            }
            model.commands_with_words += usize::from(has_word);
            model
        }
    }
}
