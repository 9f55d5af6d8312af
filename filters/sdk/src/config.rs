//! [`Config`]: the `key=value,key=value` configuration string, parsed in
//! place.

/// The filter's configuration string (`key=value` pairs separated by `,`,
/// after the host took out its reserved keys).
///
/// Values cannot contain `,`; the library filters separate list items with
/// `+` ([`split_list`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config<'a> {
    text: &'a str,
}

impl<'a> Config<'a> {
    /// A configuration from its text.
    pub const fn new(text: &'a str) -> Config<'a> {
        Config { text }
    }

    /// The whole text.
    pub fn as_str(&self) -> &'a str {
        self.text
    }

    /// Whether there are no pairs at all (empty text, or only `,` and
    /// spaces).
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The `(key, value)` pairs in order. Spaces around keys and values are
    /// trimmed, empty entries (`a=1,,b=2`) skipped, and an entry without
    /// `=` gives the value `""`.
    pub fn iter(&self) -> Pairs<'a> {
        Pairs {
            rest: self.text.split(','),
        }
    }

    /// The value of `key` (the last one if it is given more than once).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .last()
    }

    /// [`get`](Config::get) and [`parse_u64`]: `None` if absent,
    /// `Some(None)` if present but not a number.
    pub fn get_u64(&self, key: &str) -> Option<Option<u64>> {
        self.get(key).map(parse_u64)
    }
}

impl<'a> IntoIterator for &Config<'a> {
    type Item = (&'a str, &'a str);
    type IntoIter = Pairs<'a>;

    fn into_iter(self) -> Pairs<'a> {
        self.iter()
    }
}

/// Iterator over a [`Config`]'s pairs.
#[derive(Clone, Debug)]
pub struct Pairs<'a> {
    rest: core::str::Split<'a, char>,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        loop {
            let entry = self.rest.next()?.trim();
            if entry.is_empty() {
                continue;
            }
            return Some(match entry.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim()),
                None => (entry, ""),
            });
        }
    }
}

/// Parses an unsigned number: decimal, or hexadecimal after `0x`/`0X`.
/// `None` if empty, not a number, or over `u64::MAX`.
pub fn parse_u64(s: &str) -> Option<u64> {
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        value = value.checked_mul(radix as u64)?.checked_add(d as u64)?;
    }
    Some(value)
}

/// Parses `true|false|yes|no|on|off|1|0`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Parses a MAC address: six hex octets separated by `:` or `-`
/// (`02:00:00:00:00:01`), or twelve hex digits (`020000000001`).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    fn hex(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut mac = [0u8; 6];
    match b.len() {
        12 => {
            for (i, m) in mac.iter_mut().enumerate() {
                *m = (hex(b[2 * i])? << 4) | hex(b[2 * i + 1])?;
            }
        }
        17 => {
            let sep = b[2];
            if sep != b':' && sep != b'-' {
                return None;
            }
            for (i, m) in mac.iter_mut().enumerate() {
                if i > 0 && b[3 * i - 1] != sep {
                    return None;
                }
                *m = (hex(b[3 * i])? << 4) | hex(b[3 * i + 1])?;
            }
        }
        _ => return None,
    }
    Some(mac)
}

/// Splits a list value on `+` (`0x0800+0x0806`). An empty value gives one
/// empty item (which no item parser accepts).
pub fn split_list(value: &str) -> core::str::Split<'_, char> {
    value.split('+')
}
