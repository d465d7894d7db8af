//! The v5 property reader and writer used by every packet module.
