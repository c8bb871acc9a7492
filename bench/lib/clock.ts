/**
 * Microseconds on CLOCK_MONOTONIC. On Linux every process reads the same clock,
 * so a publisher can stamp a message and a load generator process can subtract.
 */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}
