//! A parsed xl.cfg file: its settings in order and libxlu's typed getters
//! (`xlu_cfg_get_string`, `xlu_cfg_get_long`, `xlu_cfg_get_list`, ...).
//!
//! What it owns: [`Value`], [`Setting`], [`Config`] and the [`ValueError`]s
//! a getter returns, worded as libxlu words its warnings. Where libxlu only
//! warns and carries on without the value, Oxen's toolstack refuses the
//! config, so these are errors here.
//!
//! As in libxlu, a number is kept as the text it was written as, and
//! strings and numbers are interchangeable to the getters: `memory = "512"`
//! is as good as `memory = 512`, and `name = 42` names the domain "42".
//! Numbers are converted as C's `strtol(s, &end, 0)` converts them: `0x`
//! means hex and a leading `0` means *octal* (`memory = 010` is 8 MiB).

use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A value on the right of `=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A quoted string, dequoted.
    Str(String),
    /// An unquoted number, as written (`512`, `0x200`).
    Number(String),
    /// `[ v, v, ... ]`; items may themselves be lists.
    List(Vec<Value>),
}

impl Value {
    /// The text of a string or number; `None` for a list.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) | Value::Number(s) => Some(s),
            Value::List(_) => None,
        }
    }

    /// The items of a list; `None` for a string or number.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

/// How a setting was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `KEY = VALUE`
    Assign,
    /// `KEY += VALUE`
    Add,
}

/// One `KEY = VALUE` (or `+=`), with the line its value starts on. For
/// `+=` the value is already the concatenation with the earlier one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The key.
    pub name: String,
    /// The value (after any `+=` concatenation).
    pub value: Value,
    /// `=` or `+=`.
    pub op: Op,
    /// The line the value starts on.
    pub line: u32,
}

/// A parsed config: every setting in file order; the last one for a key is
/// the one that counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    file: String,
    settings: Vec<Setting>,
}

/// Why a getter refused a setting (libxlu's wording, with file and line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    /// The config's file name.
    pub file: String,
    /// The setting's line.
    pub line: u32,
    /// What is wrong.
    pub kind: ValueErrorKind,
}

/// What is wrong with a setting's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueErrorKind {
    /// A list where one value was wanted.
    ListNotSingle(String),
    /// One value where a list was wanted.
    SingleNotList(String),
    /// `+=` on a key read as a number.
    AddToNumber(String),
    /// A number too large for a C `long`.
    OutOfRange(String),
    /// Not a number at all.
    NotANumber(String),
    /// Below the key's minimum: (value, minimum).
    TooSmall(i64, i64),
    /// Above the key's maximum: (value, maximum).
    TooLarge(i64, i64),
    /// An item of a list of strings is itself a list: (key, item index).
    ItemNotString(String, usize),
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        match &self.kind {
            ValueErrorKind::ListNotSingle(k) => {
                write!(f, "parameter `{k}' is a list but should be a single value")
            }
            ValueErrorKind::SingleNotList(k) => {
                write!(f, "parameter `{k}' is a single value but should be a list")
            }
            ValueErrorKind::AddToNumber(k) => {
                write!(f, "can't use += with numbers for parameter `{k}'")
            }
            ValueErrorKind::OutOfRange(k) => write!(
                f,
                "parameter `{k}' could not be parsed as a number: Numerical result out of range"
            ),
            ValueErrorKind::NotANumber(k) => write!(f, "parameter `{k}' is not a valid number"),
            ValueErrorKind::TooSmall(v, min) => {
                write!(f, "value `{v}' is smaller than minimum bound '{min}'")
            }
            ValueErrorKind::TooLarge(v, max) => {
                write!(f, "value `{v}' is greater than maximum bound '{max}'")
            }
            ValueErrorKind::ItemNotString(k, i) => {
                write!(
                    f,
                    "item {i} of parameter `{k}' is a list but should be a string"
                )
            }
        }
    }
}

/// Why [`strtol`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StrtolError {
    /// No number, or something after it.
    Invalid,
    /// Too large for an `i64` (`ERANGE`).
    Range,
}

/// C's `strtol(s, &end, 0)` requiring the whole string to be used, as
/// libxlu does: leading white space and a sign are allowed; `0x` is hex,
/// a leading `0` octal, otherwise decimal.
pub fn strtol(s: &str) -> Result<i64, StrtolError> {
    let b = s.as_bytes();
    let mut i = b
        .iter()
        .take_while(|&&c| matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c))
        .count();
    let neg = match b.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let hex_digit = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_hexdigit());
    let base: u32 = if b.get(i) == Some(&b'0')
        && matches!(b.get(i + 1), Some(b'x') | Some(b'X'))
        && hex_digit(b.get(i + 2))
    {
        i += 2;
        16
    } else if b.get(i) == Some(&b'0') {
        8
    } else {
        10
    };
    let mut val: i128 = 0;
    let mut digits = 0;
    let mut range = false;
    while let Some(d) = b.get(i).and_then(|&c| (c as char).to_digit(base)) {
        val = val * i128::from(base) + i128::from(d);
        if val > i128::from(i64::MAX) + 1 {
            range = true;
            val = i128::from(i64::MAX) + 1;
        }
        digits += 1;
        i += 1;
    }
    if digits == 0 {
        return Err(StrtolError::Invalid);
    }
    let val = if neg { -val } else { val };
    if range || val > i128::from(i64::MAX) || val < i128::from(i64::MIN) {
        return Err(StrtolError::Range);
    }
    if i != b.len() {
        return Err(StrtolError::Invalid);
    }
    Ok(val as i64)
}

impl Config {
    /// An empty config for `file`.
    pub fn new(file: &str) -> Self {
        Config {
            file: file.to_owned(),
            settings: Vec::new(),
        }
    }

    /// The file name errors are reported against.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Every setting, in file order (a key may appear more than once).
    pub fn settings(&self) -> &[Setting] {
        &self.settings
    }

    /// Appends a setting (the parser's `xlu__cfg_set_store`, after any
    /// `+=` concatenation).
    pub fn push(&mut self, setting: Setting) {
        self.settings.push(setting);
    }

    /// The setting that counts for `key`: the last one.
    pub fn get(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().rev().find(|s| s.name == key)
    }

    /// The setting that counts for `key`, to change it.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Setting> {
        self.settings.iter_mut().rev().find(|s| s.name == key)
    }

    /// The keys set, each once, in the order they first appear.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        for s in &self.settings {
            if !keys.contains(&s.name.as_str()) {
                keys.push(&s.name);
            }
        }
        keys
    }

    fn err(&self, s: &Setting, kind: ValueErrorKind) -> ValueError {
        ValueError {
            file: self.file.clone(),
            line: s.line,
            kind,
        }
    }

    fn atom(&self, key: &str) -> Result<Option<(&Setting, &str)>, ValueError> {
        let Some(s) = self.get(key) else {
            return Ok(None);
        };
        match s.value.as_str() {
            Some(v) => Ok(Some((s, v))),
            None => Err(self.err(s, ValueErrorKind::ListNotSingle(key.to_owned()))),
        }
    }

    /// `xlu_cfg_get_string`: the string (or number's text) for `key`;
    /// `Ok(None)` if unset, an error if it is a list.
    pub fn get_string(&self, key: &str) -> Result<Option<&str>, ValueError> {
        Ok(self.atom(key)?.map(|(_, v)| v))
    }

    /// `xlu_cfg_get_long`: the number for `key`; `Ok(None)` if unset.
    pub fn get_long(&self, key: &str) -> Result<Option<i64>, ValueError> {
        self.get_bounded_long(key, i64::MIN, i64::MAX)
    }

    /// `xlu_cfg_get_bounded_long`: as [`get_long`](Self::get_long), and the
    /// number must lie in `min..=max`.
    pub fn get_bounded_long(
        &self,
        key: &str,
        min: i64,
        max: i64,
    ) -> Result<Option<i64>, ValueError> {
        let Some((s, text)) = self.atom(key)? else {
            return Ok(None);
        };
        if s.op == Op::Add {
            return Err(self.err(s, ValueErrorKind::AddToNumber(key.to_owned())));
        }
        let l = match strtol(text) {
            Ok(l) => l,
            Err(StrtolError::Range) => {
                return Err(self.err(s, ValueErrorKind::OutOfRange(key.to_owned())))
            }
            Err(StrtolError::Invalid) => {
                return Err(self.err(s, ValueErrorKind::NotANumber(key.to_owned())))
            }
        };
        if l < min {
            return Err(self.err(s, ValueErrorKind::TooSmall(l, min)));
        }
        if l > max {
            return Err(self.err(s, ValueErrorKind::TooLarge(l, max)));
        }
        Ok(Some(l))
    }

    /// `xlu_cfg_get_list`: the items of the list for `key`; `Ok(None)` if
    /// unset, an error if it is a single value.
    pub fn get_list(&self, key: &str) -> Result<Option<&[Value]>, ValueError> {
        let Some(s) = self.get(key) else {
            return Ok(None);
        };
        match &s.value {
            Value::List(l) => Ok(Some(l)),
            _ => Err(self.err(s, ValueErrorKind::SingleNotList(key.to_owned()))),
        }
    }

    /// `xlu_cfg_get_list_as_string_list`: a list whose items must all be
    /// strings (or numbers). Where libxlu silently stops at a nested list,
    /// this is an error.
    pub fn get_string_list(&self, key: &str) -> Result<Option<Vec<&str>>, ValueError> {
        let Some(items) = self.get_list(key)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, v) in items.iter().enumerate() {
            match v.as_str() {
                Some(s) => out.push(s),
                None => {
                    let s = self.get(key).expect("get_list found it");
                    return Err(self.err(s, ValueErrorKind::ItemNotString(key.to_owned(), i)));
                }
            }
        }
        Ok(Some(out))
    }

    /// The line of the setting for `key`, if set.
    pub fn line_of(&self, key: &str) -> Option<u32> {
        self.get(key).map(|s| s.line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    fn cfg(items: &[(&str, Value, Op, u32)]) -> Config {
        let mut c = Config::new("t.cfg");
        for (n, v, op, l) in items {
            c.push(Setting {
                name: n.to_string(),
                value: v.clone(),
                op: *op,
                line: *l,
            });
        }
        c
    }

    fn num(s: &str) -> Value {
        Value::Number(s.to_string())
    }

    fn st(s: &str) -> Value {
        Value::Str(s.to_string())
    }

    #[test]
    fn strtol_as_c() {
        assert_eq!(strtol("512"), Ok(512));
        assert_eq!(strtol("0x200"), Ok(512));
        assert_eq!(strtol("0X1f"), Ok(31));
        assert_eq!(strtol("010"), Ok(8));
        assert_eq!(strtol("0"), Ok(0));
        assert_eq!(strtol(" -12"), Ok(-12));
        assert_eq!(strtol("+7"), Ok(7));
        assert_eq!(strtol("08"), Err(StrtolError::Invalid));
        assert_eq!(strtol("0x"), Err(StrtolError::Invalid));
        assert_eq!(strtol("12 "), Err(StrtolError::Invalid));
        assert_eq!(strtol("128M"), Err(StrtolError::Invalid));
        assert_eq!(strtol(""), Err(StrtolError::Invalid));
        assert_eq!(strtol("9223372036854775807"), Ok(i64::MAX));
        assert_eq!(strtol("-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(strtol("9223372036854775808"), Err(StrtolError::Range));
        assert_eq!(
            strtol("99999999999999999999999999x"),
            Err(StrtolError::Range)
        );
    }

    #[test]
    fn last_setting_wins() {
        let c = cfg(&[
            ("memory", num("128"), Op::Assign, 1),
            ("name", st("a"), Op::Assign, 2),
            ("memory", num("256"), Op::Assign, 3),
        ]);
        assert_eq!(c.get_long("memory"), Ok(Some(256)));
        assert_eq!(c.line_of("memory"), Some(3));
        assert_eq!(c.keys(), vec!["memory", "name"]);
        assert_eq!(c.get_long("vcpus"), Ok(None));
    }

    #[test]
    fn strings_and_numbers_interchange() {
        let c = cfg(&[
            ("memory", st("0x100"), Op::Assign, 1),
            ("name", num("42"), Op::Assign, 2),
        ]);
        assert_eq!(c.get_long("memory"), Ok(Some(256)));
        assert_eq!(c.get_string("name"), Ok(Some("42")));
    }

    #[test]
    fn getter_errors_name_key_and_line() {
        let c = cfg(&[
            ("memory", st("lots"), Op::Assign, 4),
            ("disk", st("x"), Op::Assign, 5),
            ("kernel", Value::List(vec![]), Op::Assign, 6),
            ("vcpus", num("2"), Op::Add, 7),
            ("maxmem", num("99999999999999999999"), Op::Assign, 8),
            (
                "cpus",
                Value::List(vec![st("1"), Value::List(vec![])]),
                Op::Assign,
                9,
            ),
        ]);
        let e = |r: Result<_, ValueError>| r.map(|_: Option<()>| ()).unwrap_err().to_string();
        assert_eq!(
            e(c.get_long("memory").map(|_| None)),
            "t.cfg:4: parameter `memory' is not a valid number"
        );
        assert_eq!(
            e(c.get_list("disk").map(|_| None)),
            "t.cfg:5: parameter `disk' is a single value but should be a list"
        );
        assert_eq!(
            e(c.get_string("kernel").map(|_| None)),
            "t.cfg:6: parameter `kernel' is a list but should be a single value"
        );
        assert_eq!(
            e(c.get_long("vcpus").map(|_| None)),
            "t.cfg:7: can't use += with numbers for parameter `vcpus'"
        );
        assert_eq!(
            e(c.get_long("maxmem").map(|_| None)),
            "t.cfg:8: parameter `maxmem' could not be parsed as a number: Numerical result out of range"
        );
        assert_eq!(
            e(c.get_string_list("cpus").map(|_| None)),
            "t.cfg:9: item 1 of parameter `cpus' is a list but should be a string"
        );
        let c = cfg(&[("vcpus", num("0"), Op::Assign, 3)]);
        assert_eq!(
            e(c.get_bounded_long("vcpus", 1, 8).map(|_| None)),
            "t.cfg:3: value `0' is smaller than minimum bound '1'"
        );
        let c = cfg(&[("vcpus", num("9"), Op::Assign, 3)]);
        assert_eq!(
            e(c.get_bounded_long("vcpus", 1, 8).map(|_| None)),
            "t.cfg:3: value `9' is greater than maximum bound '8'"
        );
    }
}
