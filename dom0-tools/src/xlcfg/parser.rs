//! The xl.cfg parser: libxlu's bison grammar (`libxlu_cfg_y.y`) run as the
//! LALR(1) automaton bison builds from it, so that what is accepted, the
//! syntax errors reported (bison's verbose `syntax error, unexpected X,
//! expecting Y or Z`) and the error recovery all match libxlu.
//!
//! What it owns: the grammar's automaton, the settings store
//! (`xlu__cfg_set_store`: later settings win, `+=` concatenates strings or
//! lists), and the diagnostics: [`ParseError`] in libxlu's format
//! `FILE:LINE: config parsing error near `TOKEN': MESSAGE`.
//!
//! The grammar:
//!
//! ```text
//! file:       stmts | stmts assignment
//! stmts:      /* empty */ | stmts stmt
//! stmt:       assignment endstmt | endstmt | error NEWLINE
//! assignment: IDENT '=' value | IDENT "+=" value
//! endstmt:    NEWLINE | ';'
//! value:      atom | '[' nlok valuelist ']'
//! atom:       STRING | NUMBER
//! valuelist:  /* empty */ | values | values ',' nlok
//! values:     value nlok | values ',' nlok value nlok
//! nlok:       /* empty */ | nlok NEWLINE
//! ```
//!
//! A syntax error skips to the end of its line (`error NEWLINE`) and parsing
//! goes on, so one run reports several errors; as in bison, errors within
//! three tokens of the last one are not reported, and an error after a
//! complete last assignment (`stmts assignment`) or at the end of input
//! while recovering ends the parse. An error on a line where a lexical
//! error was already reported is not reported again. Any error fails the
//! whole parse.
//!
//! Deliberate differences: lists may nest at most [`MAX_NESTING`] deep
//! (libxlu: about 5000); and for an unexpected newline libxlu names the
//! line *before* the newline (its line bookkeeping subtracts one twice, so
//! `foo` alone on line 1 is reported at line 0); we name the newline's own
//! line.
//!
//! This module and the lexer were checked against a C build of
//! libxlu's scanner and grammar on 8000 generated inputs, valid and broken:
//! the same settings, and the same messages but for the documented
//! differences (and bison 3.8 saying `end of file` where the 3.3.2 that
//! generated Xen 4.17's parser says `$end`).

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use super::lexer::{Lexer, Tok, Token};
use super::value::{Config, Op, Setting, Value};

/// One error as libxlu prints it:
///
/// ```text
/// FILE:LINE: config parsing error near `NEAR'<newline>: MESSAGE
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The config's file name.
    pub file: String,
    /// The line.
    pub line: u32,
    /// The text of the token the error was found at (trailing blanks and
    /// newline removed); `None` when that leaves nothing. At the end of
    /// input it is `Some("")` (libxlu prints `near `'`).
    pub near: Option<String>,
    /// The token was a bare newline (printed as `<newline>`).
    pub newline: bool,
    /// What is wrong (`syntax error, unexpected ...`, `lexical error`, ...).
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: config parsing error near ", self.file, self.line)?;
        if let Some(n) = &self.near {
            write!(f, "`{n}'")?;
        }
        if self.newline {
            f.write_str("<newline>")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything a failed parse reported, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseErrors {
    /// The errors (at least one).
    pub errors: Vec<ParseError>,
    /// The input had characters that suggest Python (`+ - . ( ) :`), which
    /// old xm configs allowed; libxlu then adds a warning saying so.
    pub likely_python: bool,
}

/// libxlu's warning after a failed parse of something that looks like Python.
pub const PYTHON_WARNING: &str = "warning: Config file looks like it contains Python code.\n\
warning:  Arbitrary Python is no longer supported.\n\
warning:  See https://wiki.xen.org/wiki/PythonInXlConfig";

impl fmt::Display for ParseErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        if self.likely_python {
            write!(f, "\n{PYTHON_WARNING}")?;
        }
        Ok(())
    }
}

/// The state the scanner and parser share (libxlu's `CfgParseContext`
/// plus the bits of flex state error messages use).
pub(crate) struct Diagnostics {
    file: String,
    /// Errors so far.
    pub(crate) errors: Vec<ParseError>,
    /// Something Python-like was seen.
    pub(crate) likely_python: bool,
    /// Line of the last lexical error (`ctx->lexerrlineno`), -1 if none.
    lexerrlineno: i64,
    /// flex's current `yytext`.
    text: String,
    /// The last token's `yylloc.first_line`.
    pub(crate) last_line: i64,
}

impl Diagnostics {
    /// No errors yet, for `file`.
    pub(crate) fn new(file: &str) -> Self {
        Diagnostics {
            file: file.to_owned(),
            errors: Vec::new(),
            likely_python: false,
            lexerrlineno: -1,
            text: String::new(),
            last_line: 1,
        }
    }

    /// Sets flex's `yytext`.
    pub(crate) fn set_text(&mut self, text: String) {
        self.text = text;
    }

    /// `xlu__cfg_yyerror`: reports `msg` at line `loc` near the current
    /// token, unless a lexical error was already reported there.
    /// `own_line` keeps a newline token's own line (see the module doc).
    fn yyerror(&mut self, loc: i64, msg: &str, own_line: bool) {
        if loc <= self.lexerrlineno {
            return;
        }
        let mut line = loc;
        let mut text = self.text.as_str();
        let mut newline = false;
        if let Some(t) = text.strip_suffix('\n') {
            text = t;
            if !own_line {
                line -= 1;
            }
            newline = text.is_empty();
        }
        let text = text.trim_end_matches([' ', '\t']);
        let near = if text.is_empty() {
            None
        } else {
            // C's printf stops at a NUL (flex's end-of-input yytext).
            Some(text.split('\0').next().unwrap_or("").to_owned())
        };
        self.errors.push(ParseError {
            file: self.file.clone(),
            line: u32::try_from(line.max(0)).unwrap_or(u32::MAX),
            near,
            newline,
            message: msg.to_owned(),
        });
    }

    /// `xlu__cfgl_lexicalerror`: an error found by the scanner at its
    /// current line (`yylineno`).
    pub(crate) fn lexical_error(&mut self, lineno: i64, msg: &str) {
        self.yyerror(lineno, msg, false);
        self.lexerrlineno = lineno;
    }

    /// Whether anything failed (`ctx->err`).
    pub(crate) fn failed(&self) -> bool {
        !self.errors.is_empty()
    }
}

/// How deeply lists may nest. libxlu allows about 5000 levels (bison's
/// stack limit); real configs use two, and a bound keeps the recursive
/// drop, clone and comparison of values shallow on Dom0's small stack.
pub const MAX_NESTING: usize = 64;

/// What a state does with a lookahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    Shift(u8),
    Reduce(u8),
    Accept,
    Error,
}

/// States whose action is a reduction whatever comes next: bison reduces
/// there without reading a lookahead. (The others read one.)
fn default_only(state: u8) -> Option<u8> {
    Some(match state {
        0 => 4,
        3 => 1,
        6 => 11,
        7 => 12,
        8 => 5,
        10 => 7,
        11 => 8,
        14 => 6,
        15 => 15,
        16 => 16,
        17 => 22,
        18 => 10,
        19 => 13,
        20 => 9,
        22 => 23,
        23 => 22,
        27 => 14,
        28 => 22,
        30 => 22,
        _ => return None,
    })
}

/// The automaton's action table (states numbered as bison numbers them).
/// Item sets, for the reader:
///  1 `$accept: file . $end`; 2 `file: stmts .`, `stmts: stmts . stmt`;
///  4 `stmt: error . NEWLINE`; 5 `assignment: IDENT . '=' value | IDENT . "+=" value`;
///  9 `file: stmts assignment .`, `stmt: assignment . endstmt`;
/// 12/13 after `+=`/`=`: a value; 21 `'[' nlok . valuelist ']'`;
/// 24 `'[' nlok valuelist . ']'`; 25 `valuelist: values . [',' nlok]`;
/// 26/31 `... value nlok .` (more newlines); 29 `values ',' nlok . [value nlok]`.
fn action(state: u8, tok: Tok) -> Act {
    use Tok::*;
    let value_start = |tok: Tok| match tok {
        Str => Some(Act::Shift(15)),
        Number => Some(Act::Shift(16)),
        LBracket => Some(Act::Shift(17)),
        _ => None,
    };
    match state {
        1 => match tok {
            End => Act::Accept,
            _ => Act::Error,
        },
        2 => match tok {
            End => Act::Reduce(2),
            Ident => Act::Shift(5),
            Newline => Act::Shift(6),
            Semicolon => Act::Shift(7),
            _ => Act::Error,
        },
        4 => match tok {
            Newline => Act::Shift(11),
            _ => Act::Error,
        },
        5 => match tok {
            AddAssign => Act::Shift(12),
            Assign => Act::Shift(13),
            _ => Act::Error,
        },
        9 => match tok {
            Newline => Act::Shift(6),
            Semicolon => Act::Shift(7),
            _ => Act::Reduce(3),
        },
        12 | 13 => value_start(tok).unwrap_or(Act::Error),
        21 | 29 => match (tok, value_start(tok)) {
            (_, Some(a)) => a,
            (Newline, _) => Act::Shift(22),
            _ => Act::Reduce(if state == 21 { 17 } else { 19 }),
        },
        24 => match tok {
            RBracket => Act::Shift(27),
            _ => Act::Error,
        },
        25 => match tok {
            Comma => Act::Shift(28),
            _ => Act::Reduce(18),
        },
        26 | 31 => match tok {
            Newline => Act::Shift(22),
            _ => Act::Reduce(if state == 26 { 20 } else { 21 }),
        },
        _ => Act::Error,
    }
}

/// The tokens a state that detects errors would have accepted, in bison's
/// order (for `expecting ...`).
fn expected(state: u8) -> &'static [Tok] {
    use Tok::*;
    match state {
        1 => &[End],
        2 => &[End, Ident, Newline, Semicolon],
        4 => &[Newline],
        5 => &[AddAssign, Assign],
        12 | 13 => &[Str, Number, LBracket],
        24 => &[RBracket],
        _ => &[],
    }
}

/// Rule lengths and left-hand sides.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nt {
    File,
    Stmts,
    Stmt,
    Assignment,
    Endstmt,
    Value,
    Atom,
    Valuelist,
    Values,
    Nlok,
}

fn rule(r: u8) -> (Nt, usize) {
    match r {
        2 => (Nt::File, 1),
        3 => (Nt::File, 2),
        4 => (Nt::Stmts, 0),
        5 => (Nt::Stmts, 2),
        6 => (Nt::Stmt, 2),
        7 => (Nt::Stmt, 1),
        8 => (Nt::Stmt, 2),
        9 | 10 => (Nt::Assignment, 3),
        11 | 12 => (Nt::Endstmt, 1),
        13 => (Nt::Value, 1),
        14 => (Nt::Value, 4),
        15 | 16 => (Nt::Atom, 1),
        17 => (Nt::Valuelist, 0),
        18 => (Nt::Valuelist, 1),
        19 => (Nt::Valuelist, 3),
        20 => (Nt::Values, 2),
        21 => (Nt::Values, 5),
        22 => (Nt::Nlok, 0),
        23 => (Nt::Nlok, 2),
        // Rule 1 is the accept, handled apart.
        _ => (Nt::File, 0),
    }
}

fn goto(state: u8, nt: Nt) -> u8 {
    match (nt, state) {
        (Nt::File, _) => 1,
        (Nt::Stmts, _) => 2,
        (Nt::Stmt, _) => 8,
        (Nt::Assignment, _) => 9,
        (Nt::Endstmt, 9) => 14,
        (Nt::Endstmt, _) => 10,
        (Nt::Value, 13) => 20,
        (Nt::Value, 21) => 23,
        (Nt::Value, 29) => 30,
        (Nt::Value, _) => 18,
        (Nt::Atom, _) => 19,
        (Nt::Valuelist, _) => 24,
        (Nt::Values, _) => 25,
        (Nt::Nlok, 17) => 21,
        (Nt::Nlok, 23) => 26,
        (Nt::Nlok, 28) => 29,
        (Nt::Nlok, _) => 31,
    }
}

/// A stack entry's semantic value.
#[derive(Debug)]
enum Sem {
    None,
    Ident(String),
    Value(Value),
    List(Vec<Value>),
}

struct Entry {
    state: u8,
    sem: Sem,
    line: i64,
}

/// The parser's and scanner's state over one input.
struct Parser<'a> {
    lexer: Lexer<'a>,
    diag: Diagnostics,
    config: Config,
}

impl Parser<'_> {
    /// `xlu__cfg_set_store`.
    fn store(&mut self, name: String, op: Op, value: Value, line: i64) {
        if self.diag.failed() {
            return;
        }
        let mut value = value;
        if op == Op::Add {
            if let Some(prev) = self.config.get_mut(&name) {
                match (&mut prev.value, value) {
                    (Value::List(a), Value::List(b)) => {
                        // libxlu moves the items, leaving the old list empty.
                        let mut l = core::mem::take(a);
                        l.extend(b);
                        value = Value::List(l);
                    }
                    (Value::List(_), _) | (_, Value::List(_)) => {
                        let lineno = self.lexer.lineno();
                        self.diag
                            .lexical_error(lineno, "can't add [list] to \"string\" or vice versa");
                        return;
                    }
                    (p, b) => {
                        let p = &*p;
                        let mut s = String::from(p.as_str().unwrap_or(""));
                        s.push_str(b.as_str().unwrap_or(""));
                        value = match (p, b) {
                            (Value::Number(_), Value::Number(_)) => Value::Number(s),
                            _ => Value::Str(s),
                        };
                    }
                }
            }
        }
        self.config.push(Setting {
            name,
            value,
            op,
            line: u32::try_from(line.max(0)).unwrap_or(u32::MAX),
        });
    }

    /// Reduces by rule `r`, returning the nonterminal's value and line.
    fn reduce(&mut self, r: u8, mut rhs: Vec<Entry>, prev_line: i64) -> (Sem, i64) {
        let line = rhs.first().map_or(prev_line, |e| e.line);
        let take = |e: &mut Entry| core::mem::replace(&mut e.sem, Sem::None);
        let sem = match r {
            9 | 10 => {
                let name = match take(&mut rhs[0]) {
                    Sem::Ident(n) => n,
                    _ => String::new(),
                };
                let vline = rhs[2].line;
                if let Sem::Value(v) = take(&mut rhs[2]) {
                    let op = if r == 9 { Op::Assign } else { Op::Add };
                    self.store(name, op, v, vline);
                }
                Sem::None
            }
            13 | 15 | 16 => take(&mut rhs[0]),
            14 => match take(&mut rhs[2]) {
                Sem::List(l) => Sem::Value(Value::List(l)),
                _ => Sem::Value(Value::List(Vec::new())),
            },
            17 => Sem::List(Vec::new()),
            18 | 19 => take(&mut rhs[0]),
            20 => match take(&mut rhs[0]) {
                Sem::Value(v) => Sem::List(vec![v]),
                _ => Sem::List(Vec::new()),
            },
            21 => {
                let mut l = match take(&mut rhs[0]) {
                    Sem::List(l) => l,
                    _ => Vec::new(),
                };
                if let Sem::Value(v) = take(&mut rhs[3]) {
                    l.push(v);
                }
                Sem::List(l)
            }
            _ => Sem::None,
        };
        (sem, line)
    }

    /// `yysyntax_error` + `yyerror`.
    fn syntax_error(&mut self, state: u8, la: &Token) {
        let mut msg = String::from("syntax error, unexpected ");
        msg.push_str(la.tok.bison_name());
        for (i, t) in expected(state).iter().enumerate() {
            msg.push_str(if i == 0 { ", expecting " } else { " or " });
            msg.push_str(t.bison_name());
        }
        let own_line = la.tok == Tok::Newline && !la.after_newline;
        self.diag.yyerror(la.line, &msg, own_line);
    }

    fn run(&mut self) {
        let mut stack: Vec<Entry> = vec![Entry {
            state: 0,
            sem: Sem::None,
            line: 1,
        }];
        let mut la: Option<Token> = None;
        // bison's yyerrstatus: tokens to shift before errors are reported again.
        let mut errstatus = 0u8;
        loop {
            let state = stack.last().map_or(0, |e| e.state);
            let act = match default_only(state) {
                Some(r) => Act::Reduce(r),
                None => {
                    if la.is_none() {
                        la = Some(self.lexer.next_token(&mut self.diag));
                    }
                    let tok = la.as_ref().map_or(Tok::End, |t| t.tok);
                    action(state, tok)
                }
            };
            match act {
                Act::Accept => return,
                Act::Shift(s) => {
                    let Some(t) = la.take() else { return };
                    if t.tok == Tok::LBracket
                        && stack.iter().filter(|e| e.state == 17).count() >= MAX_NESTING
                    {
                        let msg = format!("lists nested more than {MAX_NESTING} deep");
                        self.diag.yyerror(t.line, &msg, false);
                        return;
                    }
                    errstatus = errstatus.saturating_sub(1);
                    let sem = match t.tok {
                        Tok::Ident => Sem::Ident(t.value),
                        Tok::Str => Sem::Value(Value::Str(t.value)),
                        Tok::Number => Sem::Value(Value::Number(t.value)),
                        _ => Sem::None,
                    };
                    stack.push(Entry {
                        state: s,
                        sem,
                        line: t.line,
                    });
                }
                Act::Reduce(r) => {
                    let (nt, len) = rule(r);
                    let at = stack.len().saturating_sub(len).max(1);
                    let rhs = stack.split_off(at);
                    let prev_line = stack.last().map_or(1, |e| e.line);
                    let (sem, line) = self.reduce(r, rhs, prev_line);
                    let from = stack.last().map_or(0, |e| e.state);
                    stack.push(Entry {
                        state: goto(from, nt),
                        sem,
                        line,
                    });
                }
                Act::Error => {
                    let Some(t) = la.take() else { return };
                    if errstatus == 0 {
                        self.syntax_error(state, &t);
                    }
                    if errstatus == 3 {
                        if t.tok == Tok::End {
                            return;
                        }
                        // Discard the token.
                    } else {
                        la = Some(t);
                    }
                    errstatus = 3;
                    // Pop to a state that can shift `error` (only state 2).
                    loop {
                        match stack.last() {
                            Some(e) if e.state == 2 => break,
                            Some(_) if stack.len() > 1 => {
                                stack.pop();
                            }
                            _ => return,
                        }
                    }
                    stack.push(Entry {
                        state: 4,
                        sem: Sem::None,
                        line: self.diag.last_line,
                    });
                }
            }
        }
    }
}

/// Parses xl.cfg text. `file` is the name errors carry.
pub fn parse(file: &str, text: &str) -> Result<Config, ParseErrors> {
    let mut p = Parser {
        lexer: Lexer::new(text),
        diag: Diagnostics::new(file),
        config: Config::new(file),
    };
    p.run();
    if p.diag.failed() {
        Err(ParseErrors {
            errors: p.diag.errors,
            likely_python: p.diag.likely_python,
        })
    } else {
        Ok(p.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn ok(text: &str) -> Config {
        match parse("t.cfg", text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn errs(text: &str) -> String {
        parse("t.cfg", text).unwrap_err().to_string()
    }

    fn s(v: &str) -> Value {
        Value::Str(v.to_string())
    }

    fn n(v: &str) -> Value {
        Value::Number(v.to_string())
    }

    #[test]
    fn empty_and_blank() {
        assert!(ok("").settings().is_empty());
        assert!(ok("\n\n;;\n# c\n").settings().is_empty());
    }

    #[test]
    fn settings_lines_and_order() {
        let c = ok("name = \"a\"\n\nmemory=512;vcpus = 2\nmemory = 1024");
        assert_eq!(c.get("name").unwrap().value, s("a"));
        assert_eq!(c.get("name").unwrap().line, 1);
        assert_eq!(c.get("vcpus").unwrap().line, 3);
        assert_eq!(c.get("memory").unwrap().value, n("1024"));
        assert_eq!(c.get("memory").unwrap().line, 4);
        assert_eq!(c.settings().len(), 4);
    }

    #[test]
    fn lists() {
        let c = ok("a = []\nb = [ 1, 'x', ]\nc = [\n  'p',\n\n  'q'\n  ,\n]\nd = [[1,2],[]]\n");
        assert_eq!(c.get("a").unwrap().value, Value::List(vec![]));
        assert_eq!(c.get("b").unwrap().value, Value::List(vec![n("1"), s("x")]));
        assert_eq!(c.get("c").unwrap().value, Value::List(vec![s("p"), s("q")]));
        assert_eq!(c.get("c").unwrap().line, 3);
        assert_eq!(
            c.get("d").unwrap().value,
            Value::List(vec![Value::List(vec![n("1"), n("2")]), Value::List(vec![])])
        );
    }

    #[test]
    fn plus_equals() {
        let c = ok("x = 'a'\nx += \"b\"\nl = [1]\nl += [2, 3]\nnew += 'z'\nn = 1\nn += 2\n");
        assert_eq!(c.get("x").unwrap().value, s("ab"));
        assert_eq!(c.get("x").unwrap().op, Op::Add);
        assert_eq!(
            c.get("l").unwrap().value,
            Value::List(vec![n("1"), n("2"), n("3")])
        );
        assert_eq!(c.get("new").unwrap().value, s("z"));
        assert_eq!(c.get("n").unwrap().value, n("12"));
        assert_eq!(
            errs("x = 'a'\nx += [1]\n"),
            "t.cfg:2: config parsing error near `]': can't add [list] to \"string\" or vice versa"
        );
        assert_eq!(
            errs("x = [1]\nx += 'a'\n"),
            "t.cfg:2: config parsing error near `'a'': can't add [list] to \"string\" or vice versa"
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            errs("name\n"),
            "t.cfg:1: config parsing error near <newline>: syntax error, unexpected NEWLINE, expecting += or '='"
        );
        assert_eq!(
            errs("x = 1\nname 'a'\n"),
            "t.cfg:2: config parsing error near `'a'': syntax error, unexpected STRING, expecting += or '='"
        );
        assert_eq!(
            errs("x =\n"),
            "t.cfg:1: config parsing error near <newline>: syntax error, unexpected NEWLINE, expecting STRING or NUMBER or '['"
        );
        assert_eq!(
            errs("= 1\n"),
            "t.cfg:1: config parsing error near `=': syntax error, unexpected '=', expecting $end or IDENT or NEWLINE or ';'"
        );
        assert_eq!(
            errs("x = [1 2]\n"),
            "t.cfg:1: config parsing error near `2': syntax error, unexpected NUMBER, expecting ']'"
        );
        assert_eq!(
            errs("x = [1,\n"),
            "t.cfg:1: config parsing error near `': syntax error, unexpected $end, expecting ']'"
        );
        assert_eq!(
            errs("x = 1 2\ny = 3\n"),
            "t.cfg:1: config parsing error near `2': syntax error, unexpected NUMBER, expecting $end"
        );
        assert_eq!(
            errs("x = 1 # c\ny 2 # d\n"),
            "t.cfg:2: config parsing error near `2': syntax error, unexpected NUMBER, expecting += or '='"
        );
    }

    #[test]
    fn recovery_reports_later_lines() {
        let e = parse("t.cfg", "a\nb = 1\nc = 2\nd\ne = 3\n").unwrap_err();
        assert_eq!(e.errors.len(), 2);
        assert_eq!(e.errors[0].line, 1);
        assert_eq!(e.errors[1].line, 4);
        // Within three tokens of an error, errors are not reported (bison).
        let e = parse("t.cfg", "a\nb\n").unwrap_err();
        assert_eq!(e.errors.len(), 1);
    }

    #[test]
    fn lexical_error_hides_syntax_error_on_its_line() {
        let e = parse("t.cfg", "memory = 128 MB 3\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.cfg:1: config parsing error near `MB': lexical error"
        );
    }

    #[test]
    fn nesting_is_bounded() {
        let ok_depth = format!(
            "x = {}{}\n",
            "[".repeat(MAX_NESTING),
            "]".repeat(MAX_NESTING)
        );
        assert!(parse("t.cfg", &ok_depth).is_ok());
        let deep = format!("y = 1\nx = {}1{}\n", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(
            errs(&deep),
            "t.cfg:2: config parsing error near `[': lists nested more than 64 deep"
        );
    }

    #[test]
    fn python_warning() {
        let e = parse("t.cfg", "memory = 64 + 64\n").unwrap_err();
        assert!(e.likely_python);
        assert!(e.to_string().ends_with(PYTHON_WARNING));
    }
}
