// SPDX-License-Identifier: GPL-2.0

//! Sizes for people: binary units, exact where it matters.

/// `bytes` in the largest binary unit that keeps it at least 1, with one decimal where the
/// value is not whole: `4 KiB`, `1.5 MiB`, `100 B`.
pub fn size(bytes: u64) -> String {
    let mut out = String::new();
    size_into(&mut out, bytes);
    out
}

/// [`size`], appended to `out`.
pub fn size_into(out: &mut String, bytes: u64) {
    use std::fmt::Write;
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    while unit + 1 < UNITS.len() && bytes >> (10 * (unit + 1)) != 0 {
        unit += 1;
    }
    // In integers, rounded half to even as `{:.N}` rounds the exact quotient: a line of a
    // trace holds several sizes, and float formatting is most of what printing it costs.
    let one = 1u128 << (10 * unit);
    let b = u128::from(bytes);
    let fixed = |out: &mut String, places: u32| {
        let scale = 10u128.pow(places);
        let (q, r) = (b * scale / one, b * scale % one);
        let q = match (2 * r).cmp(&one) {
            std::cmp::Ordering::Greater => q + 1,
            std::cmp::Ordering::Equal => q + (q & 1),
            std::cmp::Ordering::Less => q,
        };
        let _ = write!(
            out,
            "{}.{:0width$} {}",
            q / scale,
            q % scale,
            UNITS[unit],
            width = places as usize
        );
    };
    if b % one == 0 {
        let _ = write!(out, "{} {}", b / one, UNITS[unit]);
    } else if b < 10 * one {
        fixed(out, 2);
    } else {
        fixed(out, 1);
    }
}

/// [`delta`], appended to `out`.
pub fn delta_into(out: &mut String, before: u64, after: u64) {
    match after.cmp(&before) {
        std::cmp::Ordering::Greater => {
            out.push('+');
            size_into(out, after - before);
        }
        std::cmp::Ordering::Less => {
            out.push('-');
            size_into(out, before - after);
        }
        std::cmp::Ordering::Equal => out.push_str("±0"),
    }
}

pub fn delta(before: u64, after: u64) -> String {
    match after.cmp(&before) {
        std::cmp::Ordering::Greater => format!("+{}", size(after - before)),
        std::cmp::Ordering::Less => format!("-{}", size(before - after)),
        std::cmp::Ordering::Equal => "±0".to_string(),
    }
}

/// Parses a size such as `4096`, `64K`, `2M`, `1G`, `16KiB`, `1MB` (binary units). `None` if
/// it is not one, or is 0.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: u64 = num.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    num.checked_mul(1 << shift).filter(|&n| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(100), "100 B");
        assert_eq!(size(4096), "4 KiB");
        assert_eq!(size(1536 * 1024), "1.50 MiB");
        assert_eq!(size(132 * 1024 + 512), "132.5 KiB");
        assert_eq!(delta(4096, 0), "-4 KiB");
        // Rounding as `{:.N}` rounds the float, ties to even, for every size a float holds
        // exactly (below 2^53 bytes: 8 PiB).
        for bytes in (0..200_000u64)
            .step_by(7)
            .chain((0..53).map(|i| 1u64 << i))
            .chain((0..52).map(|i| (1u64 << i) * 3 / 2 + 5))
            .chain([1023 * 1024 * 1024 + 512 * 1024 - 5 * 1024, (1 << 53) - 1])
        {
            let mut unit = 0;
            let mut scaled = bytes as f64;
            while scaled >= 1024.0 && unit < 5 {
                scaled /= 1024.0;
                unit += 1;
            }
            let name = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"][unit];
            let want = if unit == 0 || scaled.fract() == 0.0 {
                format!("{scaled:.0} {name}")
            } else if scaled < 10.0 {
                format!("{scaled:.2} {name}")
            } else {
                format!("{scaled:.1} {name}")
            };
            assert_eq!(size(bytes), want, "{bytes} bytes");
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("64K"), Some(65536));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("0"), None);
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999G"), None);
    }
}
