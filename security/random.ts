/**
 * Seeded randomness for the fuzz and isolation tests, so a failing run can
 * be repeated: each test prints its seed, and PATPUSH_SEED sets it.
 */
import { randomInt } from "node:crypto";

/** Returns PATPUSH_SEED as a number, or a fresh random 31-bit seed when it is unset. */
export function testSeed(): number {
  const seedText = process.env.PATPUSH_SEED;
  return seedText === undefined || seedText === "" ? randomInt(2 ** 31) : Number(seedText);
}

/** A seeded pseudo-random source with the helpers the tests draw from. */
export interface SeededRandom {
  /** Returns a float in [0, 1). */
  next(): number;
  /** Returns an integer in [0, max). */
  int(max: number): number;
  /** Returns a random element of a non-empty list. */
  pick<T>(items: readonly T[]): T;
  /** Returns `length` random bytes. */
  bytes(length: number): Buffer;
}

/** Creates a mulberry32 generator (a 32-bit state PRNG, not for cryptography) from `seed`. */
export function createRandom(seed: number): SeededRandom {
  let state = seed >>> 0;
  const next = (): number => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (max: number): number => Math.floor(next() * max);
  return {
    next,
    int,
    pick: <T>(items: readonly T[]): T => items[int(items.length)]!,
    bytes: (length: number): Buffer => {
      const buffer = Buffer.alloc(length);
      for (let i = 0; i < length; i++) buffer[i] = int(256);
      return buffer;
    },
  };
}
