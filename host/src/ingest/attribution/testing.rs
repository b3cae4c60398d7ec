//! What the attribution tests share: a config map's identity, and a fixed
//! sequence of mangled webhook bodies.

use crate::model::Target;

/// The config map `name` in namespace `shop`.
pub fn config_map(name: &str) -> Target {
    Target {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        resource: "configmaps".into(),
        subresource: None,
        namespace: Some("shop".into()),
        name: name.into(),
    }
}

/// `count` bodies made from `bodies` by truncating them, overwriting a few
/// bytes, or replacing them with random bytes; the same every run (xorshift
/// from `seed`), so a failure is found again.
pub fn mangled(bodies: &[Vec<u8>], seed: u64, count: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..count).map(move |round| {
        let mut mangled = bodies[round % bodies.len()].clone();
        match next() % 3 {
            0 => mangled.truncate((next() as usize) % (mangled.len() + 1)),
            1 => {
                for _ in 0..1 + next() % 8 {
                    let at = (next() as usize) % mangled.len();
                    mangled[at] = next() as u8;
                }
            }
            _ => mangled = (0..next() % 512).map(|_| next() as u8).collect(),
        }
        mangled
    })
}
