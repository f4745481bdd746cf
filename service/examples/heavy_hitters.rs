//! Space-Saving against a count-min sketch for the hour, day and week leaderboards: the
//! measurement behind the choice in docs/ARCHITECTURE.md ("Leaderboards").
//!
//! `cargo run --release -p highpress --example heavy_hitters [increments]` feeds the same
//! streams of increments (default 10 million each) to
//! - highpress's Space-Saving summary (`4 × K` slots), which ranks by the certain part of each
//!   sum, and
//! - a count-min sketch with conservative update (depth 4) plus the `K` keys with the highest
//!   estimates, at two widths,
//!
//! and prints, against exact sums, how many of the true top 100 and top K each one ranks, how
//! far its scores are from the truth, the bytes it holds (as jemalloc counts them, key strings
//! included, as in the service where keys come from requests) and its time per increment.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::time::Instant;

use hashbrown::{DefaultHashBuilder, HashMap};
use highpress::counter::leaderboard::HEAVY_HITTERS_PER_K;
use highpress::counter::leaderboard::heavy_hitters::HeavyHitters;
use highpress::domain::CounterKey;

const TOP_K: usize = 1_000;
const TOP_READ: usize = 100;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bytes this thread holds: what it allocated minus what it freed, as jemalloc (the service's
/// allocator) counts them when the program asks, before its thread cache.
fn live_bytes() -> i64 {
    let allocated = tikv_jemalloc_ctl::thread::allocatedp::read().expect("jemalloc stats");
    let freed = tikv_jemalloc_ctl::thread::deallocatedp::read().expect("jemalloc stats");
    allocated.get() as i64 - freed.get() as i64
}

/// What the comparison asks of each structure.
trait Ranking {
    fn name(&self) -> String;
    fn add(&mut self, key: CounterKey, weight: i64);
    /// The `k` highest scores it would publish, highest first.
    fn top(&self, k: usize) -> Vec<(CounterKey, i64)>;
}

struct SpaceSaving(HeavyHitters);

impl Ranking for SpaceSaving {
    fn name(&self) -> String {
        format!("Space-Saving, {} slots", self.0.capacity())
    }
    fn add(&mut self, key: CounterKey, weight: i64) {
        self.0.add(&key, weight);
    }
    fn top(&self, k: usize) -> Vec<(CounterKey, i64)> {
        let mut all: Vec<_> = self.0.tracked().map(|(k, s)| (k.clone(), s)).collect();
        all.sort_unstable_by_key(|entry| std::cmp::Reverse(entry.1));
        all.truncate(k);
        all
    }
}

/// A count-min sketch with conservative update, and the `capacity` keys of highest estimate.
struct CountMin {
    width: usize,
    rows: Vec<Vec<i64>>,
    hasher: DefaultHashBuilder,
    capacity: usize,
    /// Candidates by (estimate, arrival), and each candidate's entry there.
    by_estimate: BTreeMap<(i64, u64), CounterKey>,
    candidates: HashMap<CounterKey, (i64, u64)>,
    arrivals: u64,
}

impl CountMin {
    fn new(depth: usize, width: usize, capacity: usize) -> Self {
        Self {
            width,
            rows: vec![vec![0; width]; depth],
            hasher: DefaultHashBuilder::default(),
            capacity,
            by_estimate: BTreeMap::new(),
            candidates: HashMap::with_capacity(capacity),
            arrivals: 0,
        }
    }

    /// Conservative update: each row's cell rises only as far as the new estimate.
    fn update(&mut self, key: &CounterKey, weight: i64) -> i64 {
        let hash = self.hasher.hash_one(key);
        let (h1, h2) = (hash as u32 as usize, (hash >> 32) as usize | 1);
        let cells: Vec<usize> = (0..self.rows.len())
            .map(|row| h1.wrapping_add(row.wrapping_mul(h2)) % self.width)
            .collect();
        let estimate = cells
            .iter()
            .zip(&self.rows)
            .map(|(&c, row)| row[c])
            .min()
            .unwrap_or(0)
            + weight;
        for (&c, row) in cells.iter().zip(&mut self.rows) {
            row[c] = row[c].max(estimate);
        }
        estimate
    }
}

impl Ranking for CountMin {
    fn name(&self) -> String {
        format!(
            "count-min {}×{} + {} candidates",
            self.rows.len(),
            self.width,
            self.capacity
        )
    }
    fn add(&mut self, key: CounterKey, weight: i64) {
        let estimate = self.update(&key, weight);
        if let Some(entry) = self.candidates.get_mut(&key) {
            let old = *entry;
            *entry = (estimate, old.1);
            let k = self.by_estimate.remove(&old).expect("indexed");
            self.by_estimate.insert((estimate, old.1), k);
            return;
        }
        if self.candidates.len() == self.capacity {
            match self.by_estimate.first_key_value() {
                Some((&(lowest, _), _)) if lowest < estimate => {
                    let (_, evicted) = self.by_estimate.pop_first().expect("not empty");
                    self.candidates.remove(&evicted);
                }
                _ => return,
            }
        }
        self.arrivals += 1;
        let entry = (estimate, self.arrivals);
        self.candidates.insert(key.clone(), entry);
        self.by_estimate.insert(entry, key);
    }
    fn top(&self, k: usize) -> Vec<(CounterKey, i64)> {
        self.by_estimate
            .iter()
            .rev()
            .take(k)
            .map(|(&(s, _), key)| (key.clone(), s))
            .collect()
    }
}

/// splitmix64: a small, fast, seeded generator, so every structure sees the same stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Which resource ids a stream draws, in what proportions.
enum Keys {
    Uniform(u64),
    /// Zipf over `n` ids with exponent `s`, drawn from its cumulative distribution.
    Zipf(Vec<f64>),
}

impl Keys {
    fn zipf(n: usize, s: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 1..=n {
            total += 1.0 / (rank as f64).powf(s);
            cdf.push(total);
        }
        cdf.iter_mut().for_each(|c| *c /= total);
        Keys::Zipf(cdf)
    }
    fn draw(&self, rng: &mut Rng) -> u64 {
        match self {
            Keys::Uniform(n) => rng.next() % n,
            Keys::Zipf(cdf) => {
                let u = rng.unit();
                cdf.partition_point(|&c| c < u).min(cdf.len() - 1) as u64
            }
        }
    }
}

fn key(id: u32) -> CounterKey {
    CounterKey::new("view", &format!("post:{id}"))
}

/// One stream: the ids in the order they are incremented, each id's key, and the exact sums.
struct Stream {
    ids: Vec<u32>,
    keys: Vec<CounterKey>,
    exact: Vec<i64>,
}

impl Stream {
    fn draw(keys: &Keys, increments: u64) -> Self {
        let mut rng = Rng(7);
        let ids: Vec<u32> = (0..increments)
            .map(|_| keys.draw(&mut rng) as u32)
            .collect();
        let n = ids.iter().max().map_or(0, |&m| m as usize + 1);
        let mut exact = vec![0; n];
        ids.iter().for_each(|&id| exact[id as usize] += 1);
        Self {
            ids,
            keys: (0..n as u32).map(key).collect(),
            exact,
        }
    }

    fn true_sum(&self, key: &CounterKey) -> i64 {
        let id: usize = key.resource_id()["post:".len()..]
            .parse()
            .expect("a post id");
        self.exact[id]
    }
}

/// One structure's score sheet on one stream.
struct Result {
    name: String,
    bytes: i64,
    ns_per_add: f64,
    recall_read: f64,
    recall_k: f64,
    mean_error: f64,
    max_error: f64,
    overcounted: usize,
}

/// Feeds `stream` to a structure twice: with a fresh key per increment, as requests bring
/// them, for what it holds and ranks; then with the keys built beforehand, for its time.
fn run(build: &dyn Fn() -> Box<dyn Ranking>, stream: &Stream) -> Result {
    let before = live_bytes();
    let mut ranking = build();
    for &id in &stream.ids {
        ranking.add(key(id), 1);
    }
    let bytes = live_bytes() - before;

    let mut timed = build();
    let started = Instant::now();
    for &id in &stream.ids {
        timed.add(stream.keys[id as usize].clone(), 1);
    }
    let ns_per_add = started.elapsed().as_nanos() as f64 / stream.ids.len() as f64;
    drop(timed);

    let mut truth = stream.exact.clone();
    truth.sort_unstable_by(|a, b| b.cmp(a));
    let recall = |k: usize| -> f64 {
        // A tie at the K-th true sum counts for whichever member is ranked.
        let kth = truth.get(k - 1).copied().unwrap_or(0);
        let ranked = ranking.top(k);
        let hits = ranked
            .iter()
            .filter(|(key, _)| stream.true_sum(key) >= kth)
            .count();
        hits as f64 / k as f64
    };
    let shown = ranking.top(TOP_READ);
    let errors: Vec<f64> = shown
        .iter()
        .map(|(k, s)| {
            let t = stream.true_sum(k);
            (s - t).abs() as f64 / t.max(1) as f64
        })
        .collect();
    Result {
        name: ranking.name(),
        bytes,
        ns_per_add,
        recall_read: recall(TOP_READ),
        recall_k: recall(TOP_K),
        mean_error: errors.iter().sum::<f64>() / errors.len().max(1) as f64,
        max_error: errors.iter().copied().fold(0.0, f64::max),
        overcounted: shown
            .iter()
            .filter(|(k, s)| *s > stream.true_sum(k))
            .count(),
    }
}

fn main() {
    let increments: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("increments: a whole number"))
        .unwrap_or(10_000_000);
    let streams = [
        ("Zipf 1.1 over 100k ids", Keys::zipf(100_000, 1.1)),
        ("Zipf 0.8 over 2M ids", Keys::zipf(2_000_000, 0.8)),
        ("uniform over 2M ids", Keys::Uniform(2_000_000)),
    ];
    println!("{increments} increments per stream, K = {TOP_K}, the API reads the top {TOP_READ}");
    for (name, keys) in &streams {
        let stream = Stream::draw(keys, increments);
        println!(
            "\n{name}: {} distinct ids",
            stream.exact.iter().filter(|&&n| n > 0).count()
        );
        println!(
            "| structure | bytes held | ns per increment | top {TOP_READ} found | top {TOP_K} found | \
             mean error, top {TOP_READ} | max error, top {TOP_READ} | over the truth, top {TOP_READ} |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        // Each pair holds about the same memory.
        let rankings: [&dyn Fn() -> Box<dyn Ranking>; 4] = [
            &|| Box::new(SpaceSaving(HeavyHitters::new(HEAVY_HITTERS_PER_K * TOP_K))),
            &|| Box::new(CountMin::new(4, 16_384, TOP_K)),
            &|| {
                Box::new(SpaceSaving(HeavyHitters::new(
                    4 * HEAVY_HITTERS_PER_K * TOP_K,
                )))
            },
            &|| Box::new(CountMin::new(4, 65_536, TOP_K)),
        ];
        for build in rankings {
            let r = run(build, &stream);
            println!(
                "| {} | {:.0} KB | {:.0} | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {} |",
                r.name,
                r.bytes as f64 / 1024.0,
                r.ns_per_add,
                100.0 * r.recall_read,
                100.0 * r.recall_k,
                100.0 * r.mean_error,
                100.0 * r.max_error,
                r.overcounted
            );
        }
    }
}
