//! Benchmarks of recadam; filled by the recadam-simd issue.
