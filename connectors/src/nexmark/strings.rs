//! Strings for Nexmark events: the reference generator's fixed lists, and
//! random lowercase strings written straight into a `String` (one allocation,
//! eight letters per random draw, no formatting machinery).

use crate::datagen::SplitMix64;

/// The reference generator's first names.
pub(crate) const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];

/// The reference generator's last names.
pub(crate) const LAST_NAMES: [&str; 9] = [
    "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris",
];

/// The reference generator's cities (few, so that queries find matches).
pub(crate) const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];

/// The reference generator's states.
pub(crate) const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];

/// The channels most bids come from.
pub(crate) const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];

/// Shortest random string (as in the reference generator).
const MIN_STRING_LENGTH: u64 = 3;

/// Appends `len` random characters to `buf`: lowercase letters, and about
/// one in thirteen `special` (never first or last, so a space never needs
/// trimming).
pub(crate) fn push_random(rng: &mut SplitMix64, buf: &mut String, len: usize, special: char) {
    buf.reserve(len);
    let mut bits = 0u64;
    for i in 0..len {
        if i % 8 == 0 {
            bits = rng.next_u64();
        }
        let byte = (bits >> ((i % 8) * 8)) as u8;
        // 20/256 ≈ 1/13, the reference generator's odds of a special char.
        let c = if byte < 20 && i != 0 && i + 1 != len {
            special
        } else {
            char::from(b'a' + byte % 26)
        };
        buf.push(c);
    }
}

/// Appends a random string of `MIN_STRING_LENGTH..max_len` characters (the
/// reference generator's `nextString`).
pub(crate) fn push_random_string(
    rng: &mut SplitMix64,
    buf: &mut String,
    max_len: u64,
    special: char,
) {
    let len = rng.gen_range(MIN_STRING_LENGTH..max_len.max(MIN_STRING_LENGTH + 1));
    push_random(rng, buf, len as usize, special);
}

/// A random string of `MIN_STRING_LENGTH..max_len` characters.
pub(crate) fn random_string(rng: &mut SplitMix64, max_len: u64, special: char) -> String {
    let mut s = String::with_capacity(max_len as usize);
    push_random_string(rng, &mut s, max_len, special);
    s
}

/// Appends `n` as exactly four digits, zero-padded.
pub(crate) fn push_four_digits(buf: &mut String, n: u64) {
    for div in [1000, 100, 10, 1] {
        buf.push(char::from(b'0' + ((n / div) % 10) as u8));
    }
}

/// Appends the decimal digits of `n`.
pub(crate) fn push_decimal(buf: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[at..] {
        buf.push(char::from(d));
    }
}

/// Padding for an event of `current` bytes so that events average `average`
/// bytes: `average - current` ± 20 %, empty if the event is already larger
/// (the reference generator's `nextExtra`).
pub(crate) fn extra(rng: &mut SplitMix64, current: usize, average: usize) -> String {
    let Some(target) = average.checked_sub(current) else {
        return String::new();
    };
    let delta = (target as u64 * 2).div_ceil(10);
    let len = (target as u64 - delta) + rng.below(2 * delta + 1);
    let mut s = String::with_capacity(len as usize);
    push_random(rng, &mut s, len as usize, ' ');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_strings_are_lowercase_and_within_length_bounds() {
        let mut rng = SplitMix64::new(5);
        for _ in 0..1_000 {
            let s = random_string(&mut rng, 20, ' ');
            assert!((3..20).contains(&s.len()), "{s:?}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == ' '));
            assert_eq!(s.trim(), s);
        }
    }

    #[test]
    fn numbers_are_written_without_format() {
        let mut s = String::new();
        push_four_digits(&mut s, 42);
        s.push(' ');
        push_decimal(&mut s, 0);
        s.push(' ');
        push_decimal(&mut s, u64::MAX);
        assert_eq!(s, format!("0042 0 {}", u64::MAX));
    }

    #[test]
    fn padding_brings_events_near_the_average_size() {
        let mut rng = SplitMix64::new(9);
        let total: usize = (0..1_000)
            .map(|_| 40 + extra(&mut rng, 40, 100).len())
            .sum();
        let mean = total / 1_000;
        assert!((95..=105).contains(&mean), "{mean}");
        assert!(extra(&mut rng, 200, 100).is_empty());
    }
}
