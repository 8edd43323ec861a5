//! Executable loading (ELF). Filled by the loader issue.
#![no_std]
