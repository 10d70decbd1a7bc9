//! The registry of channels. One lock guards all of them: operations are short
//! and never await while holding it, and a single lock keeps cross-channel
//! work (a connection leaving every channel) simple for a local server.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::channel::{Channel, ChannelLimits};

pub struct Channels {
    channels: Mutex<HashMap<String, Channel>>,
    limits: ChannelLimits,
}

impl Channels {
    pub fn new(limits: ChannelLimits) -> Self {
        Self { channels: Mutex::new(HashMap::new()), limits }
    }

    /// Runs `f` on the named channel, creating it if needed.
    pub fn with<R>(&self, name: &str, f: impl FnOnce(&mut Channel) -> R) -> R {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = channels.entry(name.to_string()).or_insert_with(|| Channel::new(name, self.limits));
        f(channel)
    }

    /// Runs `f` on each named channel that exists.
    pub fn each(&self, names: &[String], mut f: impl FnMut(&mut Channel)) {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            if let Some(channel) = channels.get_mut(name) {
                f(channel);
            }
        }
    }
}
