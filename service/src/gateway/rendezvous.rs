//! Rendezvous (highest-random-weight) hashing of counter keys over counter endpoints. Every
//! gateway computes the same ranking from the same endpoint names, with no coordination; adding
//! or removing one of N endpoints moves only about 1/N of the keys.

/// 64-bit FNV-1a: a fixed, documented hash, so that every gateway version agrees.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The splitmix64 finalizer: spreads the combined hashes evenly.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An endpoint's identity for hashing, computed once per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeHash(u64);

impl NodeHash {
    pub fn of(name: &str) -> Self {
        Self(fnv1a(name.as_bytes()))
    }
}

/// A key's hash, computed once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHash(u64);

impl KeyHash {
    pub fn of(key: &str) -> Self {
        Self(fnv1a(key.as_bytes()))
    }
}

/// The weight of `node` for `key`; the node with the highest weight owns the key.
pub fn weight(node: NodeHash, key: KeyHash) -> u64 {
    mix(node.0 ^ mix(key.0))
}

/// Indices of `nodes` from owner to last resort, for `key`.
pub fn ranking(nodes: &[NodeHash], key: KeyHash) -> Vec<usize> {
    let mut order: Vec<usize> = (0..nodes.len()).collect();
    order.sort_unstable_by_key(|&i| std::cmp::Reverse(weight(nodes[i], key)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owner(nodes: &[&str], key: &str) -> String {
        let hashes: Vec<NodeHash> = nodes.iter().map(|n| NodeHash::of(n)).collect();
        nodes[ranking(&hashes, KeyHash::of(key))[0]].to_string()
    }

    #[test]
    fn ranking_is_deterministic_and_order_independent() {
        let a = ["10.0.0.1:50051", "10.0.0.2:50051", "10.0.0.3:50051"];
        let b = ["10.0.0.3:50051", "10.0.0.1:50051", "10.0.0.2:50051"];
        for i in 0..200 {
            let key = format!("c:like:item{i}");
            assert_eq!(owner(&a, &key), owner(&b, &key));
        }
    }

    #[test]
    fn keys_spread_evenly() {
        let nodes = ["a:1", "b:1", "c:1", "d:1"];
        let mut counts = std::collections::HashMap::new();
        for i in 0..20_000 {
            *counts
                .entry(owner(&nodes, &format!("c:view:{i}")))
                .or_insert(0) += 1;
        }
        for n in nodes {
            let c = counts[n];
            assert!((4_000..6_000).contains(&c), "{n} owns {c} of 20000");
        }
    }

    proptest! {
        #[test]
        fn adding_a_fourth_node_moves_about_a_quarter_and_only_to_it(seed in 0u32..1_000) {
            let three: Vec<String> = (0..3).map(|i| format!("10.{seed}.0.{i}:50051")).collect();
            let mut four = three.clone();
            four.push(format!("10.{seed}.0.9:50051"));
            let three_refs: Vec<&str> = three.iter().map(String::as_str).collect();
            let four_refs: Vec<&str> = four.iter().map(String::as_str).collect();
            let keys = 2_000;
            let mut moved = 0;
            for i in 0..keys {
                let key = format!("c:like:{seed}:{i}");
                let before = owner(&three_refs, &key);
                let after = owner(&four_refs, &key);
                if before != after {
                    prop_assert_eq!(&after, &four[3], "a key moved between nodes that stayed");
                    moved += 1;
                }
            }
            let share = f64::from(moved) / f64::from(keys);
            prop_assert!((0.18..0.32).contains(&share), "moved {}", share);
        }
    }
}
