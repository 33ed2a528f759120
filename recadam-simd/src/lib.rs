//! The RecAdam update vectorised by hand; filled by the recadam-simd issue.
#![no_std]
