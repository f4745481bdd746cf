//! A private tansu broker (Kafka wire protocol) for tests, and a collector that reads a topic's
//! events from every partition.

use super::*;

/// A private tansu broker (Apache-2.0, Kafka wire protocol) on a free loopback port with in-memory
/// storage: a restart starts empty. A missing `tansu` fails the test (scripts/install-test-deps.sh
/// installs it); nothing is skipped.
pub struct Tansu {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Tansu {
    pub fn start() -> Self {
        let mut broker = Self {
            port: free_port(),
            dir: scratch_dir("tansu"),
            child: None,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("tansu.log")).expect("tansu log file");
        let bin = tool("tansu");
        let child = Command::new(&bin)
            .arg("broker")
            .args(["--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--kafka-cluster-id", "highpress-test"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "tansu must be installed (scripts/install-test-deps.sh): {}: {e}",
                    bin.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("tansu exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "tansu on port {} did not start:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default()
    }

    /// `host:port` for `kafka.brokers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }

    /// Starts again on the same port (empty: the storage is in memory).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Creates `topic` with `partitions` partitions (bounded retries while the broker settles).
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        use rdkafka::client::DefaultClientContext;
        let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .create()
            .expect("admin client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let outcome = admin
                .create_topics(
                    &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                    &AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))),
                )
                .await;
            match outcome.as_deref() {
                Ok([Ok(_)]) => return,
                Ok([Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists))]) => return,
                other => {
                    assert!(
                        Instant::now() < deadline,
                        "creating topic {topic}: {other:?}\n{}",
                        self.log()
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The `HIGHPRESS_KAFKA__*` settings that publish to this broker's `topic`.
    pub fn env(&self, topic: &str) -> Vec<(String, String)> {
        vec![
            ("HIGHPRESS_KAFKA__ENABLED".into(), "true".into()),
            ("HIGHPRESS_KAFKA__BROKERS".into(), self.addr()),
            ("HIGHPRESS_KAFKA__TOPIC".into(), topic.into()),
        ]
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One consumed event: its partition, message key and JSON payload.
#[derive(Debug, Clone)]
pub struct ConsumedEvent {
    pub partition: i32,
    pub key: String,
    pub event: Value,
}

/// Reads a topic from the beginning of every partition (plain assignment, no consumer group) on
/// its own thread, collecting every event in arrival order until dropped.
pub struct EventCollector {
    events: std::sync::Arc<std::sync::Mutex<Vec<ConsumedEvent>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EventCollector {
    pub fn start(broker: &Tansu, topic: &str, partitions: i32) -> Self {
        use rdkafka::Message;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.addr())
            .set("group.id", format!("highpress-test-{}", free_port()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        let mut assignment = rdkafka::TopicPartitionList::new();
        for p in 0..partitions {
            assignment
                .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (events, stop) = (events.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // Errors are transient while the broker is away; the consumer reconnects.
                    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                        let consumed = ConsumedEvent {
                            partition: m.partition(),
                            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                            event: serde_json::from_slice(m.payload().unwrap_or_default())
                                .unwrap_or(Value::Null),
                        };
                        events.lock().unwrap().push(consumed);
                    }
                }
            })
        };
        Self {
            events,
            stop,
            thread: Some(thread),
        }
    }

    /// Events consumed so far.
    pub fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    /// A copy of every event consumed so far, in arrival order.
    pub fn events(&self) -> Vec<ConsumedEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Waits (bounded) until `done` holds for the events consumed so far.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&[ConsumedEvent]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if done(&self.events.lock().unwrap()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached; {} events consumed",
                self.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for EventCollector {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
