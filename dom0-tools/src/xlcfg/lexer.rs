//! The xl.cfg lexer: libxlu's flex scanner (`libxlu_cfg_l.l`) rule for
//! rule, including its quirks, written as a hand-made scanner.
//!
//! What it owns: turning bytes into tokens with the text and line flex
//! would give them (`yytext`, `yylloc.first_line`), string dequoting with
//! libxlu's escape rules, and lexical errors. Errors are reported through
//! the `Diagnostics` the parser shares with it, so lexical and syntax
//! errors come out interleaved, in input order, as libxlu prints them.
//!
//! The rules, in flex's priority order (longest match wins, then the
//! earlier rule):
//!
//! | pattern | token |
//! | --- | --- |
//! | `[a-z][._0-9a-z]*` | `IDENT` (lower case only, dots allowed) |
//! | `[0-9][0-9a-fx]*` | `NUMBER` (text kept, not converted) |
//! | `[ \t]` | skipped (`\r` is *not* white space) |
//! | `,` `[` `]` `+=` `=` `;` | themselves |
//! | `\n`, `#.*\n` | `NEWLINE` (a comment needs its newline) |
//! | `'...'`, `"..."` | `STRING`: no newline inside, `\` escapes one byte |
//! | `[+-.():]` | lexical error; the file "looks like Python" |
//! | anything else | lexical error |
//!
//! After a lexical error the scanner swallows the rest of the word (up to
//! white space), reports `lexical error`, and goes on; if the word ended at
//! a newline that newline is returned as a `NEWLINE` whose line is the
//! *next* line, as flex's `yylineno` already counts it.
//!
//! Once any error has been reported, strings are no longer dequoted (nor
//! their escapes checked), as in libxlu.
//!
//! One deliberate difference: flex silently drops a stray character right
//! at the end of input (no newline after it), so libxlu accepts
//! `memory = 512 @` at the very end of a file; we report it as the lexical
//! error it is.

use alloc::string::String;
use alloc::vec::Vec;

use super::parser::Diagnostics;

/// The kinds of token the grammar knows (bison's terminal symbols).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tok {
    /// End of input (`$end`).
    End,
    /// `[a-z][._0-9a-z]*`
    Ident,
    /// A quoted string, dequoted.
    Str,
    /// `[0-9][0-9a-fx]*`, as written.
    Number,
    /// `\n` or a comment with its newline.
    Newline,
    /// `+=`
    AddAssign,
    /// `=`
    Assign,
    /// `;`
    Semicolon,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
}

impl Tok {
    /// The name bison's verbose error messages use for the token.
    pub fn bison_name(self) -> &'static str {
        match self {
            Tok::End => "$end",
            Tok::Ident => "IDENT",
            Tok::Str => "STRING",
            Tok::Number => "NUMBER",
            Tok::Newline => "NEWLINE",
            Tok::AddAssign => "+=",
            Tok::Assign => "'='",
            Tok::Semicolon => "';'",
            Tok::LBracket => "'['",
            Tok::RBracket => "']'",
            Tok::Comma => "','",
        }
    }
}

/// One token as the parser sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// Which token.
    pub tok: Tok,
    /// Its value: the identifier, the dequoted string, the number's text.
    pub value: String,
    /// Its line, as libxlu's scanner records it (`yylloc.first_line`).
    pub line: i64,
    /// The raw matched text (`yytext`), used in error messages.
    pub text: String,
    /// A `NEWLINE` that ended a lexical error: flex gives it the line
    /// after the newline rather than the newline's own.
    pub after_newline: bool,
}

/// The scanner's state over one input.
pub struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    /// flex's `yylineno`: the line the scanner is on (1-based).
    lineno: i64,
}

fn is_ident_cont(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_'
}

fn is_number_cont(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'x'
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl<'a> Lexer<'a> {
    /// A scanner over `src`, on line 1.
    pub fn new(src: &'a str) -> Self {
        Lexer {
            src: src.as_bytes(),
            pos: 0,
            lineno: 1,
        }
    }

    /// The scanner's current line (`yylineno`).
    pub fn lineno(&self) -> i64 {
        self.lineno
    }

    fn tok(&self, tok: Tok, value: String, text: &[u8], line: i64) -> Token {
        Token {
            tok,
            value,
            line,
            text: lossy(text),
            after_newline: false,
        }
    }

    /// The next token; lexical errors on the way are reported to `diag`.
    pub fn next_token(&mut self, diag: &mut Diagnostics) -> Token {
        loop {
            let start = self.pos;
            let Some(&c) = self.src.get(start) else {
                // flex's yytext at end of input is its end-of-buffer NUL;
                // yylloc keeps the last token's line.
                diag.set_text(String::from("\0"));
                return Token {
                    tok: Tok::End,
                    value: String::new(),
                    line: diag.last_line,
                    text: String::from("\0"),
                    after_newline: false,
                };
            };
            let simple = |t: Tok| (t, 1usize);
            let (tok, len) = match c {
                b' ' | b'\t' => {
                    self.pos += 1;
                    continue;
                }
                b'a'..=b'z' => {
                    let n = self.src[start + 1..]
                        .iter()
                        .take_while(|&&b| is_ident_cont(b))
                        .count();
                    (Tok::Ident, n + 1)
                }
                b'0'..=b'9' => {
                    let n = self.src[start + 1..]
                        .iter()
                        .take_while(|&&b| is_number_cont(b))
                        .count();
                    (Tok::Number, n + 1)
                }
                b',' => simple(Tok::Comma),
                b'[' => simple(Tok::LBracket),
                b']' => simple(Tok::RBracket),
                b'=' => simple(Tok::Assign),
                b';' => simple(Tok::Semicolon),
                b'+' if self.src.get(start + 1) == Some(&b'=') => (Tok::AddAssign, 2),
                b'\n' => simple(Tok::Newline),
                b'#' => match self.src[start..].iter().position(|&b| b == b'\n') {
                    Some(nl) => (Tok::Newline, nl + 1),
                    None => match self.lexerr(diag) {
                        Some(t) => return t,
                        None => continue,
                    },
                },
                b'\'' | b'"' => match self.string_len(c) {
                    Some(n) => (Tok::Str, n),
                    None => match self.lexerr(diag) {
                        Some(t) => return t,
                        None => continue,
                    },
                },
                _ => {
                    if matches!(c, b'+' | b',' | b'-' | b'.' | b'(' | b')' | b':') {
                        diag.likely_python = true;
                    }
                    match self.lexerr(diag) {
                        Some(t) => return t,
                        None => continue,
                    }
                }
            };
            let text = &self.src[start..start + len];
            self.pos += len;
            let token = match tok {
                Tok::Newline => {
                    self.lineno += 1;
                    // The newline's own line.
                    self.tok(Tok::Newline, String::new(), text, self.lineno - 1)
                }
                Tok::Str => {
                    let value = self.dequote(text, diag);
                    self.tok(Tok::Str, value, text, self.lineno)
                }
                Tok::Ident | Tok::Number => self.tok(tok, lossy(text), text, self.lineno),
                _ => self.tok(tok, String::new(), text, self.lineno),
            };
            diag.last_line = token.line;
            diag.set_text(token.text.clone());
            return token;
        }
    }

    /// Length of a complete quoted string starting at `self.pos`, if the
    /// string pattern matches (closing quote before any newline).
    fn string_len(&self, quote: u8) -> Option<usize> {
        let s = &self.src[self.pos..];
        let mut i = 1;
        while let Some(&b) = s.get(i) {
            match b {
                b'\n' => return None,
                b'\\' => match s.get(i + 1) {
                    Some(&b'\n') | None => return None,
                    Some(_) => i += 2,
                },
                _ if b == quote => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    }

    /// flex's `lexerr` start condition: the offending character (already
    /// at `self.pos`) plus the rest of its word, or plus one blank, or plus
    /// the newline. Reports `lexical error`; returns the `NEWLINE` token
    /// when the error ended at a newline.
    fn lexerr(&mut self, diag: &mut Diagnostics) -> Option<Token> {
        let start = self.pos;
        self.pos += 1; // the character `.` matched
        let rest = &self.src[self.pos..];
        match rest.first() {
            Some(&b'\n') => {
                self.pos += 1;
                self.lineno += 1;
                let text = &self.src[start..self.pos];
                diag.set_text(lossy(text));
                diag.lexical_error(self.lineno, "lexical error");
                // GOT(NEWLINE): yylloc is yylineno, already past the newline.
                let mut t = self.tok(Tok::Newline, String::new(), text, self.lineno);
                t.after_newline = true;
                diag.last_line = t.line;
                Some(t)
            }
            Some(&b' ') | Some(&b'\t') => {
                self.pos += 1;
                diag.set_text(lossy(&self.src[start..self.pos]));
                diag.lexical_error(self.lineno, "lexical error");
                None
            }
            _ => {
                let n = rest
                    .iter()
                    .take_while(|&&b| !matches!(b, b' ' | b'\t' | b'\n'))
                    .count();
                self.pos += n;
                diag.set_text(lossy(&self.src[start..self.pos]));
                diag.lexical_error(self.lineno, "lexical error");
                None
            }
        }
    }

    /// libxlu's `xlu__cfgl_dequote`, quirks included: `\x` escapes never
    /// work (the scanner skips a digit, then wants more than two), and a
    /// good octal escape (`\NDD`, read as *decimal*) is dropped from the
    /// result. An error ends the string at the bad escape.
    fn dequote(&mut self, text: &[u8], diag: &mut Diagnostics) -> String {
        if diag.failed() {
            // libxlu stops dequoting (and so reporting bad escapes) once
            // anything has failed.
            return String::new();
        }
        diag.set_text(lossy(text));
        let body = &text[1..text.len() - 1];
        let mut out: Vec<u8> = Vec::with_capacity(body.len());
        let mut p = 0;
        while p < body.len() {
            let c = body[p];
            p += 1;
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let Some(&nc) = body.get(p) else { break };
            p += 1;
            match nc {
                b'"' | b'\'' | b'\\' => out.push(nc),
                b'a' => out.push(0x07),
                b'b' => out.push(0x08),
                b'f' => out.push(0x0c),
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'v' => out.push(0x0b),
                b'x' => {
                    // Skips one character, then needs strtoul to read more
                    // than two of the next two: impossible.
                    diag.lexical_error(
                        self.lineno,
                        "invalid digit after backslash hexnumerical character escape in quoted string",
                    );
                    break;
                }
                b'0'..=b'7' => {
                    // Up to three more characters (the closing quote may be
                    // among them), read by strtoul in base 10.
                    let end = (p + 3).min(text.len() - 1);
                    let window = &text[1 + p..1 + end];
                    let window = match window.iter().position(|&b| b == 0) {
                        Some(z) => &window[..z],
                        None => window,
                    };
                    let used = strtoul10_len(window);
                    if used <= 1 {
                        diag.lexical_error(
                            self.lineno,
                            "invalid digit after backslash octalnumerical character escape in quoted string",
                        );
                        break;
                    }
                    p += used;
                }
                _ => {
                    diag.lexical_error(
                        self.lineno,
                        "invalid character after backlash in quoted string",
                    );
                    break;
                }
            }
        }
        lossy(&out)
    }
}

/// How many bytes C's `strtoul(s, &ep, 10)` consumes (`ep - s`): white
/// space, a sign, then digits; 0 if there are no digits.
fn strtoul10_len(s: &[u8]) -> usize {
    let mut i = s
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .count();
    if matches!(s.get(i), Some(b'+') | Some(b'-')) {
        i += 1;
    }
    let digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        0
    } else {
        i + digits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn lex(src: &str) -> (Vec<(Tok, String, i64)>, Diagnostics) {
        let mut d = Diagnostics::new("t.cfg");
        let mut l = Lexer::new(src);
        let mut out = vec![];
        loop {
            let t = l.next_token(&mut d);
            if t.tok == Tok::End {
                break;
            }
            out.push((t.tok, t.value, t.line));
        }
        (out, d)
    }

    #[test]
    fn tokens_and_lines() {
        let (t, d) = lex("name = \"a b\" # c\nmemory=0x10;x+=[1,'2']\n");
        assert!(d.errors.is_empty());
        let kinds: Vec<Tok> = t.iter().map(|x| x.0).collect();
        use Tok::*;
        assert_eq!(
            kinds,
            vec![
                Ident, Assign, Str, Newline, Ident, Assign, Number, Semicolon, Ident, AddAssign,
                LBracket, Number, Comma, Str, RBracket, Newline
            ]
        );
        assert_eq!(t[2].1, "a b");
        assert_eq!(t[3].2, 1); // the comment's newline is on line 1
        assert_eq!(t[6].1, "0x10");
        assert_eq!(t[4].2, 2);
    }

    #[test]
    fn identifiers_are_lower_case_with_dots() {
        let (t, d) = lex("a.b_c9 = 1\n");
        assert!(d.errors.is_empty());
        assert_eq!(t[0].1, "a.b_c9");
        let (_, d) = lex("Name = 1\n");
        assert_eq!(
            d.errors[0].to_string(),
            "t.cfg:1: config parsing error near `Name': lexical error"
        );
    }

    #[test]
    fn escapes() {
        let (t, d) = lex(r#"a = "q\"\\\t\n'x" 'it\'s'"#);
        assert!(d.errors.is_empty());
        assert_eq!(t[2].1, "q\"\\\t\n'x");
        assert_eq!(t[3].1, "it's");
    }

    #[test]
    fn libxlu_escape_quirks() {
        // \x never works.
        let (t, d) = lex("a = \"ab\\x41c\"\n");
        assert_eq!(t[2].1, "ab");
        assert_eq!(
            d.errors[0].to_string(),
            "t.cfg:1: config parsing error near `\"ab\\x41c\"': invalid digit after backslash hexnumerical character escape in quoted string"
        );
        // A good "octal" escape is dropped; a short one is an error.
        let (t, d) = lex("a = \"a\\0123b\"\n");
        assert!(d.errors.is_empty());
        assert_eq!(t[2].1, "ab");
        let (_, d) = lex("a = \"a\\01\"\n");
        assert_eq!(d.errors.len(), 1);
        let (_, d) = lex("a = \"a\\q\"\n");
        assert!(d.errors[0]
            .to_string()
            .ends_with("invalid character after backlash in quoted string"));
    }

    #[test]
    fn lexical_errors() {
        let (t, d) = lex("memory = 128M\n");
        assert_eq!(
            d.errors[0].to_string(),
            "t.cfg:1: config parsing error near `M': lexical error"
        );
        // The error's newline is still a NEWLINE token, on the next line.
        assert_eq!(t.last().unwrap(), &(Tok::Newline, String::new(), 2));
        let (_, d) = lex("x = (1)\n");
        assert!(d.likely_python);
        // A comment needs its newline.
        let (_, d) = lex("x = 1\n# end");
        assert_eq!(
            d.errors[0].to_string(),
            "t.cfg:2: config parsing error near `#': lexical error"
        );
        let (_, d) = lex("x = 1 @");
        assert_eq!(d.errors.len(), 1);
        let (_, d) = lex("x = 'open\n");
        assert!(d.errors[0].to_string().contains("near `'open'"));
    }

    #[test]
    fn carriage_return_is_not_blank() {
        let (_, d) = lex("x = 1\r\n");
        assert_eq!(
            d.errors[0].to_string(),
            "t.cfg:1: config parsing error near `\r': lexical error"
        );
    }

    #[test]
    fn strtoul_len() {
        assert_eq!(strtoul10_len(b"123"), 3);
        assert_eq!(strtoul10_len(b"1\""), 1);
        assert_eq!(strtoul10_len(b" 12"), 3);
        assert_eq!(strtoul10_len(b"x"), 0);
        assert_eq!(strtoul10_len(b"-"), 0);
    }
}
