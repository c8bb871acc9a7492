/**
 * Preloaded into each server of the idle-socket scenario (S1), together with
 * --expose-gc: on SIGUSR2 the server runs two full garbage collections, so S1
 * can read its RSS without the garbage that V8 has not collected yet. Plain
 * JavaScript, because patpush's own command runs without tsx.
 */
process.on("SIGUSR2", () => {
  globalThis.gc?.();
  globalThis.gc?.();
});
