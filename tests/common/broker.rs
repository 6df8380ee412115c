//! Taking the broker away from one worker without touching anyone else's connections:
//! a broker user of the test's own, whose connections can be closed and refused.

/// Runs `rabbitmqctl` with `args`, which must succeed; its standard output.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let ran = std::process::Command::new("rabbitmqctl").args(args).output().expect("rabbitmqctl runs");
    assert!(ran.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&ran.stderr));
    String::from_utf8_lossy(&ran.stdout).into_owned()
}

/// A broker user of this test's own, so that its connections can be refused without
/// touching anyone else's; deleted when dropped.
pub struct BrokerUser {
    name: String,
}

impl BrokerUser {
    /// A new user named `<prefix>-<random>`, with every permission on the default vhost.
    pub fn create(prefix: &str) -> Self {
        let name = format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        rabbitmqctl(&["add_user", &name, &name]);
        rabbitmqctl(&["set_permissions", "-p", "/", &name, ".*", ".*", ".*"]);
        BrokerUser { name }
    }

    pub fn url(&self) -> String {
        format!("amqp://{0}:{0}@127.0.0.1:5672/%2f", self.name)
    }

    /// Lets this user publish (write) or not; configure and read stay allowed.
    pub fn permit_writes(&self, allowed: bool) {
        let write = if allowed { ".*" } else { "^$" };
        rabbitmqctl(&["set_permissions", "-p", "/", &self.name, ".*", write, ".*"]);
    }

    /// Lets this user open at most `max` connections; -1 for no limit.
    pub fn limit_connections(&self, max: i32) {
        rabbitmqctl(&["set_user_limits", &self.name, &format!("{{\"max-connections\": {max}}}")]);
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl").args(["delete_user", &self.name]).output();
    }
}

/// Closes the broker connection the client named `name`, as a broker restart or a
/// network partition would, with `rabbitmqctl close_connection`.
pub fn close_connection_named(name: &str) {
    // The table format prints pids as close_connection takes them (`<rabbit@host.N.N.N>`).
    let listed = rabbitmqctl(&["list_connections", "pid", "client_properties", "--no-table-headers", "-q"]);
    let marker = format!("{{\"connection_name\",\"{name}\"}}");
    let line = listed.lines().find(|l| l.contains(&marker)).expect("the worker's connection is listed");
    let pid = line.split('\t').next().unwrap();
    rabbitmqctl(&["close_connection", pid, "test: broker going away"]);
}
