//! A private Apache Kafka broker for tests, and a collector that reads a topic's events from
//! every partition.

use super::*;

/// A private Apache Kafka broker: one KRaft node (broker and controller in one JVM) on two free
/// loopback ports, the broker's listener ([`port`](Self::port)) and the controller's, with its
/// data in a scratch dir formatted afresh for each instance. `scripts/kafka.sh` writes its
/// `server.properties` and runs it (settings for one node: replication factor 1, 3 partitions by
/// default, no auto-created topics, a 512 MB heap); the process the guard holds is the JVM
/// itself. The data outlives [`kill`](Self::kill), [`stop`](Self::stop) and
/// [`restart`](Self::restart); the dir is removed on drop. Kafka not installed fails the test
/// (scripts/install-test-deps.sh installs it); nothing is skipped.
pub struct Kafka {
    pub port: u16,
    pub controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// How long a start may take until the broker answers a metadata request. A start after a
/// SIGKILL waits out the old registration's session (`broker.session.timeout.ms`, 9 s).
const KAFKA_READY: Duration = Duration::from_secs(60);

/// The one place that knows how to run the broker (also used by bench/bench.sh).
fn kafka_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh")
}

impl Kafka {
    /// A new broker, formatted afresh, ready: it answers a metadata request.
    pub fn start() -> Self {
        let mut broker = Self {
            port: free_port(),
            controller_port: free_port(),
            dir: scratch_dir("kafka"),
            child: None,
        };
        let init = Command::new("bash")
            .arg(kafka_script())
            .arg("init")
            .arg(&broker.dir)
            .arg(broker.port.to_string())
            .arg(broker.controller_port.to_string())
            .output()
            .expect("run bash scripts/kafka.sh init");
        assert!(
            init.status.success(),
            "Apache Kafka could not be set up in {} (is it installed? scripts/install-test-deps.sh \
             installs it): {}\n{}{}",
            broker.dir.display(),
            init.status,
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("kafka log file");
        // kafka.sh execs java: the child is the JVM.
        let child = Command::new("bash")
            .arg(kafka_script())
            .arg("run")
            .arg(&self.dir)
            .stdout(log.try_clone().expect("kafka log file"))
            .stderr(log)
            .spawn()
            .expect("run bash scripts/kafka.sh run");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Until the broker's port accepts and a metadata request lists the broker (bounded); panics
    /// with the log's tail if the JVM exits or the bound passes.
    fn wait_ready(&mut self) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let deadline = Instant::now() + KAFKA_READY;
        let mut client: Option<BaseConsumer> = None;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!("Apache Kafka exited with {status}:\n{}", self.log_tail(60));
            }
            assert!(
                Instant::now() < deadline,
                "Apache Kafka on port {} was not ready within {KAFKA_READY:?}:\n{}",
                self.port,
                self.log_tail(60)
            );
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                let client = client.get_or_insert_with(|| {
                    rdkafka::ClientConfig::new()
                        .set("bootstrap.servers", self.addr())
                        .create()
                        .expect("metadata client")
                });
                if client
                    .fetch_metadata(None, Duration::from_secs(2))
                    .is_ok_and(|m| !m.brokers().is_empty())
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }

    /// The broker's log, every start's.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// `host:port` for `kafka.brokers`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, as a crash would. The data dir stays (see [`start_again`](Self::start_again)).
    pub fn kill(&mut self) {
        kill_and_reap(&mut self.child);
    }

    /// SIGTERM: a clean shutdown (a couple of seconds), SIGKILL if it takes over 30 s. The data
    /// dir stays (see [`start_again`](Self::start_again)).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts the broker again after [`stop`](Self::stop) or [`kill`](Self::kill): the same
    /// ports, the same data dir, so its topics and messages are still there. Returns once it is
    /// ready; after a SIGKILL that takes about 10 s more than a first start, while the controller
    /// waits out the old registration's session.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "the broker is running: stop() or kill() it first"
        );
        self.spawn();
    }

    /// SIGKILL, then [`start_again`](Self::start_again): a crash and a restart on the same
    /// ports. The data survives it: topics and their messages are still there.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
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

impl Drop for Kafka {
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
    pub fn start(broker: &Kafka, topic: &str, partitions: i32) -> Self {
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
