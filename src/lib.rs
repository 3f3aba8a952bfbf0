//! MPR placeholder
