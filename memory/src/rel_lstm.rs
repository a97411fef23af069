//! RelLSTM (Kerg et al. 2020): an LSTM whose recurrent input is the screened-memory state `s_t`.

use burn::config::Config;
use burn::tensor::Device;

use crate::base_core::{BaseCore, BaseCoreConfig};
use crate::error::{self, invalid};
use crate::lstm::{LstmConfig, LstmInit};
use crate::screened::{Screened, ScreenedConfig};
use crate::spec::CoreSpec;

/// Configuration of the paper's RelLSTM: gates on `[s_t, x_t]` (xavier-normal weights), with
/// `s_t = ½(h_{t−1} + c_t)` read from a short-term buffer of ν states and a relevant set of ρ.
/// Built as [`Screened`] around an [`crate::lstm::Lstm`].
#[derive(Config, Debug)]
pub struct RelLstmConfig {
    /// Input width `E`.
    pub input_size: usize,
    /// Hidden width `H` (official copy/denoise: 128).
    #[config(default = 128)]
    pub hidden_size: usize,
    /// Short-term buffer size ν (official copy: 10, denoise: 15).
    #[config(default = 10)]
    pub short_term: usize,
    /// Relevant-set size ρ (official: 15).
    #[config(default = 15)]
    pub relevant: usize,
}

impl RelLstmConfig {
    /// The equivalent generic screened-memory configuration.
    pub fn screened(&self) -> ScreenedConfig {
        let lstm =
            LstmConfig::new(self.input_size, self.hidden_size).with_init(LstmInit::XavierNormal);
        ScreenedConfig::new(BaseCoreConfig::Lstm(lstm))
            .with_short_term(self.short_term)
            .with_relevant(self.relevant)
    }

    /// Checks the configuration.
    pub fn validate(&self) -> error::Result<()> {
        if self.hidden_size == 0 {
            return Err(invalid("rel_lstm", "hidden_size must be at least 1"));
        }
        self.screened().validate()
    }

    /// The number of scalar parameters [`RelLstmConfig::init`] creates, without allocating
    /// (saturating): those of the equivalent [`RelLstmConfig::screened`] configuration.
    pub fn num_params(&self) -> u64 {
        self.screened().num_params()
    }

    /// Builds the core on `device`.
    pub fn init(&self, device: &Device) -> error::Result<Screened> {
        self.validate()?;
        let lstm = LstmConfig::new(self.input_size, self.hidden_size)
            .with_init(LstmInit::XavierNormal)
            .init(device)?;
        Ok(self.screened().wrap(BaseCore::Lstm(lstm), device))
    }
}

impl CoreSpec for RelLstmConfig {
    type Module = Screened;
    const MODULAR: bool = true;

    fn default_sized(input_size: usize, hidden_size: usize) -> Self {
        RelLstmConfig::new(input_size).with_hidden_size(hidden_size)
    }
    fn input_size(&self) -> usize {
        self.input_size
    }
    fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    fn with_input_size(self, input_size: usize) -> Self {
        RelLstmConfig { input_size, ..self }
    }
    fn validate(&self) -> error::Result<()> {
        RelLstmConfig::validate(self)
    }
    fn init(&self, device: &Device) -> error::Result<Screened> {
        RelLstmConfig::init(self, device)
    }
    fn num_params(&self) -> u64 {
        RelLstmConfig::num_params(self)
    }
}
