//! How deep a policy's expressions nest, read from its text before Cedar
//! parses it.
//!
//! Cedar's parser, validator and evaluator recurse once per level of an
//! expression, so the stack a policy needs grows with its depth: its
//! validator and evaluator give up with less than 100 KiB left (the
//! validator silently, passing a policy it did not check), and its parser
//! overflows the stack, which aborts the process. So the kernel bounds the
//! depth itself, on the text, before any of them runs ([`estimate`]), and
//! runs them with stack for that depth ([`super::stack`]).
//!
//! The estimate is an upper bound on the depth of the expression Cedar
//! builds: every bracket counts one level, and, inside one, the operators
//! of each precedence level along the way (`if`, `||`, `&&`, comparisons
//! with `in`, `has`, `like` and `is`, `+` and `-`, `*`, `!`, attribute and
//! method access, and a call or index after a name). A chain of 200 `||`
//! is about 200 deep, whatever its length; a set of 10,000 strings is 2.

/// The estimated depth of the deepest policy in `text`, and the byte
/// offset where that policy starts. `(0, 0)` for a text with no policy.
/// Never fails and never recurses on the text: malformed input (which
/// Cedar refuses afterwards) gives some estimate.
pub(crate) fn estimate(text: &str) -> (usize, usize) {
    let mut deepest = (0, 0);
    // The innermost group last; the policy's top level first.
    let mut groups: Vec<Group> = vec![Group::default()];
    let mut policy_start = None;
    for (offset, token) in Tokens::new(text) {
        let nested = groups.len() > 1;
        let Some(group) = groups.last_mut() else {
            break;
        };
        policy_start.get_or_insert(offset);
        match token {
            Token::Open => groups.push(Group::default()),
            Token::Close => {
                if nested
                    && let Some(mut inner) = groups.pop()
                    && let Some(outer) = groups.last_mut()
                {
                    inner.end_element();
                    outer
                        .element
                        .push(Token::Nested(inner.best.saturating_add(1)));
                }
            }
            Token::Separator if nested => group.end_element(),
            Token::End if !nested => {
                let depth = group.policy_depth();
                if depth > deepest.0 {
                    deepest = (depth, policy_start.unwrap_or(offset));
                }
                *group = Group::default();
                policy_start = None;
            }
            other => group.element.push(other),
        }
    }
    // An unterminated policy or group still counts.
    while groups.len() > 1 {
        if let Some(mut inner) = groups.pop()
            && let Some(outer) = groups.last_mut()
        {
            inner.end_element();
            outer
                .element
                .push(Token::Nested(inner.best.saturating_add(1)));
        }
    }
    if let Some(group) = groups.last() {
        let depth = group.policy_depth();
        if depth > deepest.0 {
            deepest = (depth, policy_start.unwrap_or(0));
        }
    }
    deepest
}

/// The tokens of one bracket group seen so far.
#[derive(Default)]
struct Group {
    /// The element being read (elements are separated by `,` and `:`).
    element: Vec<Token>,
    /// The deepest element read before it.
    best: usize,
}

impl Group {
    fn end_element(&mut self) {
        self.best = self.best.max(bound(&self.element, 0));
        self.element.clear();
    }

    /// A policy at the top level: Cedar joins its scope and each `when`
    /// and `unless` clause with `&&` (and an `unless` under a `!`).
    fn policy_depth(&self) -> usize {
        let clauses = self
            .element
            .iter()
            .filter(|token| matches!(token, Token::Clause))
            .count();
        let deepest = self
            .element
            .iter()
            .map(Token::depth)
            .max()
            .unwrap_or(0)
            .max(self.best);
        if self.element.is_empty() && self.best == 0 {
            0
        } else {
            deepest.saturating_add(clauses).saturating_add(4)
        }
    }
}

/// Operators by precedence, loosest first: the bound of an expression is
/// the number of operators of its loosest level plus the bound of its
/// deepest operand at the next level.
const LEVELS: usize = 8;

fn level(token: &Token) -> Option<usize> {
    Some(match token {
        Token::If | Token::ThenElse => 0,
        Token::Or => 1,
        Token::And => 2,
        Token::Relation => 3,
        Token::AddSub => 4,
        Token::Mul => 5,
        Token::Not => 6,
        Token::Member => 7,
        _ => return None,
    })
}

/// The bound of `tokens` (no brackets left: groups are `Nested`) at
/// precedence `at`. Recurses over the [`LEVELS`] only, never over the text.
fn bound(tokens: &[Token], at: usize) -> usize {
    if tokens.is_empty() {
        return 0;
    }
    if at >= LEVELS {
        // Juxtaposed primaries: a name and its call or index, each a level.
        let deepest = tokens.iter().map(Token::depth).max().unwrap_or(0);
        return deepest.saturating_add(tokens.len().saturating_sub(1));
    }
    // `then` and `else` separate an `if`'s operands; the `if` is the level.
    let operators = tokens
        .iter()
        .filter(|token| level(token) == Some(at) && **token != Token::ThenElse)
        .count();
    let deepest = tokens
        .split(|token| level(token) == Some(at))
        .map(|operand| bound(operand, at + 1))
        .max()
        .unwrap_or(0);
    operators.saturating_add(deepest)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    /// A name, literal or entity reference: one level.
    Atom,
    /// A bracket group already read, with its depth.
    Nested(usize),
    Open,
    Close,
    /// `,` or `:`: the end of an element of a list, call or record.
    Separator,
    /// `;`: the end of a policy.
    End,
    /// `when` or `unless`.
    Clause,
    If,
    ThenElse,
    Or,
    And,
    Relation,
    AddSub,
    Mul,
    Not,
    Member,
    /// `@` and anything Cedar will refuse.
    Ignored,
}

impl Token {
    fn depth(&self) -> usize {
        match self {
            Self::Atom => 1,
            Self::Nested(depth) => *depth,
            _ => 0,
        }
    }
}

/// Cedar's tokens, as far as depth goes, with their byte offsets.
struct Tokens<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    fn rest(&self) -> &'a str {
        self.text.get(self.at..).unwrap_or_default()
    }

    fn skip_space(&mut self) {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.at += rest.len() - trimmed.len();
            if trimmed.starts_with("//") {
                self.at += trimmed.find('\n').unwrap_or(trimmed.len());
            } else {
                return;
            }
        }
    }

    /// A string literal from its opening quote, escapes included.
    fn skip_string(&mut self) {
        let mut escaped = false;
        for (index, c) in self.rest().char_indices().skip(1) {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                self.at += index + 1;
                return;
            }
        }
        self.at = self.text.len();
    }

    fn skip_word(&mut self) -> &'a str {
        let rest = self.rest();
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        self.at += end;
        rest.get(..end).unwrap_or_default()
    }

    /// After a name: `::` and the next name or string are the same
    /// reference (`Action::"exec"`, `A::B::C`).
    fn skip_path(&mut self) {
        loop {
            let before = self.at;
            self.skip_space();
            if !self.rest().starts_with("::") {
                self.at = before;
                return;
            }
            self.at += 2;
            self.skip_space();
            if self.rest().starts_with('"') {
                self.skip_string();
                return;
            }
            if self.skip_word().is_empty() {
                return;
            }
        }
    }
}

impl Iterator for Tokens<'_> {
    type Item = (usize, Token);

    fn next(&mut self) -> Option<Self::Item> {
        self.skip_space();
        let start = self.at;
        let rest = self.rest();
        let c = rest.chars().next()?;
        let two = rest.get(..2).unwrap_or_default();
        let token = if c == '"' {
            self.skip_string();
            Token::Atom
        } else if c.is_alphanumeric() || c == '_' {
            let word = self.skip_word();
            match word {
                "if" => Token::If,
                "then" | "else" => Token::ThenElse,
                "in" | "has" | "like" | "is" => Token::Relation,
                "when" | "unless" => Token::Clause,
                _ => {
                    self.skip_path();
                    Token::Atom
                }
            }
        } else {
            let (token, width) = match two {
                "||" => (Token::Or, 2),
                "&&" => (Token::And, 2),
                "==" | "!=" | "<=" | ">=" => (Token::Relation, 2),
                _ => (
                    match c {
                        '(' | '[' | '{' => Token::Open,
                        ')' | ']' | '}' => Token::Close,
                        ',' | ':' => Token::Separator,
                        ';' => Token::End,
                        '<' | '>' => Token::Relation,
                        '+' | '-' => Token::AddSub,
                        '*' => Token::Mul,
                        '!' => Token::Not,
                        '.' => Token::Member,
                        _ => Token::Ignored,
                    },
                    c.len_utf8(),
                ),
            };
            self.at += width;
            token
        };
        Some((start, token))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::estimate;

    fn depth(condition: &str) -> usize {
        estimate(&format!(
            "@id(\"p\")\nforbid (principal, action == Action::\"exec\", resource) when {{ {condition} }};"
        ))
        .0
    }

    #[test]
    fn a_chain_counts_its_operators_once() {
        let chain = |n: usize| {
            (0..=n)
                .map(|i| format!("context.cwd == \"/x{i}\""))
                .collect::<Vec<_>>()
                .join(" || ")
        };
        // `||` levels, then `==`, `.` and the name, the braces, and the
        // scope's `&&`s.
        assert_eq!(depth(&chain(200)), 200 + 3 + 1 + 5);
        assert_eq!(depth(&chain(400)) - depth(&chain(200)), 200);
    }

    #[test]
    fn brackets_ifs_and_accesses_count_each_level() {
        // Past the scope's own depth, each level adds one.
        let grows = |make: &dyn Fn(usize) -> String| depth(&make(100)) - depth(&make(50));
        assert_eq!(
            grows(&|n| format!("{}1{}", "(".repeat(n), ")".repeat(n))),
            50
        );
        assert_eq!(
            grows(&|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
            50
        );
        assert_eq!(
            grows(&|n| "if true then ".repeat(n) + "true" + &" else false".repeat(n)),
            50
        );
        assert_eq!(grows(&|n| "if true then 1 else ".repeat(n) + "2"), 50);
        assert_eq!(grows(&|n| format!("context{}", "[\"a\"]".repeat(n))), 50);
        assert_eq!(grows(&|n| format!("context{}", ".a".repeat(n))), 50);
        assert_eq!(grows(&|n| format!("{}true", "!".repeat(n))), 50);
    }

    #[test]
    fn width_is_not_depth() {
        let set = (0..10_000)
            .map(|i| format!("\"/x{i}\""))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(depth(&format!("[{set}].contains(context.cwd)")) < 12);
        // Entity references and comments add nothing.
        assert_eq!(
            depth("principal == A::B::C::\"x\" // (((((((\n"),
            depth("principal == A")
        );
    }

    #[test]
    fn the_deepest_policy_is_named_by_where_it_starts() {
        let text = "permit (principal, action, resource);\n\
                    forbid (principal, action, resource) when { ((((1)))) == 1 };\n\
                    permit (principal, action, resource) when { 1 == 1 };";
        let (depth, at) = estimate(text);
        assert!(depth >= 9);
        assert_eq!(text.get(at..at + 6), Some("forbid"));
    }

    #[test]
    fn malformed_text_gets_an_estimate() {
        for text in [
            "",
            ")))",
            "(((",
            "forbid (",
            "\"unterminated",
            "when { if",
            ";;;",
        ] {
            let _ = estimate(text);
        }
        assert!(estimate(&"(".repeat(100_000)).0 >= 100_000);
    }
}
