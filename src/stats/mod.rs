//! The operations half: run records read in aggregate. `class` holds the
//! definitions (layer of a run, type of an error) that every figure uses.

pub mod class;
