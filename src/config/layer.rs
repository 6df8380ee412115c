//! The merge engine: applies one layer's values onto the config, checking each value
//! as it lands and remembering which layer set which key, so that the cross-field
//! checks at the end can blame the right source.

use std::collections::HashMap;

use super::{ConfigError, ConfigSource, ExecutionMode, RunnerConfig};

/// A config being built, plus the source of every key set so far.
pub(crate) struct Layered {
    config: RunnerConfig,
    origins: HashMap<&'static str, ConfigSource>,
}

impl Layered {
    pub(crate) fn new(defaults: RunnerConfig) -> Self {
        Layered { config: defaults, origins: HashMap::new() }
    }

    /// Sets `key` from `raw` when the layer has a value for it. `check` turns the raw
    /// value into the typed one or says why it cannot; `slot` points at the field.
    pub(crate) fn set<R, T>(
        &mut self,
        origin: &ConfigSource,
        key: &'static str,
        raw: Option<R>,
        check: impl FnOnce(R) -> Result<T, String>,
        slot: fn(&mut RunnerConfig) -> &mut T,
    ) -> Result<(), ConfigError> {
        let Some(raw) = raw else { return Ok(()) };
        let value = check(raw).map_err(|reason| ConfigError::invalid(origin, key, reason))?;
        *slot(&mut self.config) = value;
        self.origins.insert(key, origin.clone());
        Ok(())
    }

    fn origin(&self, key: &str) -> ConfigSource {
        self.origins.get(key).cloned().unwrap_or(ConfigSource::Default)
    }

    /// Resolves values derived from others and runs the checks that involve two keys.
    pub(crate) fn finish(mut self) -> Result<RunnerConfig, ConfigError> {
        self.resolve_prefetch()?;
        self.check_docker_image()?;
        self.check_task_timeout()?;
        self.check_max_tokens()?;
        Ok(self.config)
    }

    /// Prefetch follows concurrency unless set: a lower prefetch would leave task
    /// slots idle, so it is refused.
    fn resolve_prefetch(&mut self) -> Result<(), ConfigError> {
        let amqp = &mut self.config.amqp;
        if !self.origins.contains_key("amqp.prefetch") {
            // concurrency <= MAX_CONCURRENCY, which fits a u16.
            amqp.prefetch = u16::try_from(amqp.concurrency).unwrap_or(u16::MAX);
            return Ok(());
        }
        if usize::from(amqp.prefetch) < amqp.concurrency {
            let reason = format!(
                "{} is below amqp.concurrency {}, which would leave task slots idle",
                amqp.prefetch, amqp.concurrency
            );
            return Err(ConfigError::invalid(&self.origin("amqp.prefetch"), "amqp.prefetch", reason));
        }
        Ok(())
    }

    /// A completion cap as large as the window leaves no room for the conversation.
    fn check_max_tokens(&self) -> Result<(), ConfigError> {
        let llm = &self.config.llm;
        let (Some(cap), Some(window)) = (llm.max_tokens, llm.context_tokens) else { return Ok(()) };
        if cap < window {
            return Ok(());
        }
        let origin = self.origin("llm.max_tokens");
        let reason = format!(
            "{cap} leaves no room for the conversation in llm.context_tokens {window}: it must be below it"
        );
        Err(ConfigError::invalid(&origin, "llm.max_tokens", reason))
    }

    fn check_docker_image(&self) -> Result<(), ConfigError> {
        if self.config.execution_mode == ExecutionMode::Docker && self.config.docker_image.is_none() {
            return Err(ConfigError::invalid(
                &self.origin("execution_mode"),
                "docker.image",
                "required when execution_mode is docker",
            ));
        }
        if self.config.execution_mode == ExecutionMode::Kubernetes && self.config.kubernetes.image.is_none() {
            return Err(ConfigError::invalid(
                &self.origin("execution_mode"),
                "k8s_image",
                "required when execution_mode is kubernetes",
            ));
        }
        Ok(())
    }

    /// RabbitMQ cancels a consumer that holds a delivery past `consumer_timeout`, which
    /// would redeliver a task that is still running (DESIGN §6).
    fn check_task_timeout(&self) -> Result<(), ConfigError> {
        let task = self.config.default_timeout.as_secs();
        let broker = self.config.amqp.consumer_timeout.as_secs();
        if task < broker {
            return Ok(());
        }
        let mut origin = self.origin("default_timeout_seconds");
        if origin == ConfigSource::Default {
            origin = self.origin("amqp.consumer_timeout_seconds");
        }
        let reason = format!(
            "{task}s does not fit under amqp.consumer_timeout_seconds {broker}s: the broker \
             would take the task back while it runs; raise RabbitMQ's consumer_timeout and \
             amqp.consumer_timeout_seconds together"
        );
        Err(ConfigError::invalid(&origin, "default_timeout_seconds", reason))
    }
}
