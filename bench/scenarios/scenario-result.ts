/** The results JSON of a scenario, and the set-up that every socket scenario shares. */
import { machineInfo, componentVersions } from "../lib/machine.ts";
import { PEER_NAMES, type PeerName } from "../lib/peers.ts";
import { pinSelfToLoadCpu, PINNING, startSocketEnv, type SocketEnv } from "./socket-env.ts";

export interface ScenarioOptions {
  quick: boolean;
  peers: string[];
}

export type Row = Record<string, unknown> & { peer: string };

export interface ScenarioResult {
  scenario: string;
  startedAt: string;
  machine: Record<string, unknown>;
  versions: Record<string, string>;
  command: string;
  pinning: Record<string, string>;
  rows: Row[];
  notes: string[];
}

export function peerNames(peers: readonly string[]): PeerName[] {
  const names: PeerName[] = [];
  for (const name of peers) {
    if (!(PEER_NAMES as readonly string[]).includes(name)) {
      throw new Error(`unknown peer "${name}"; expected one of ${PEER_NAMES.join(", ")}`);
    }
    names.push(name as PeerName);
  }
  return names;
}

export function newResult(scenario: string, options: ScenarioOptions, notes: string[]): ScenarioResult {
  const machine = machineInfo();
  return {
    scenario,
    startedAt: new Date().toISOString(),
    machine: { ...machine, node: process.version },
    versions: componentVersions(),
    command: `node --import tsx bench/scenarios/sockets.ts ${scenario}${options.quick ? " --quick" : ""} --peers ${options.peers.join(",")}`,
    pinning: { ...PINNING },
    rows: [],
    notes,
  };
}

/** Runs `body` against a fresh environment for `peer` and always stops what it started. */
export async function withEnv<T>(
  peer: PeerName,
  maxSockets: number,
  body: (env: SocketEnv) => Promise<T>,
  nodeFlags: readonly string[] = [],
): Promise<T> {
  pinSelfToLoadCpu();
  const env = await startSocketEnv(peer, maxSockets, nodeFlags);
  try {
    return await body(env);
  } finally {
    await env.stop();
  }
}

export function failedRow(peer: string, error: unknown): Row {
  return { peer, failed: true, error: error instanceof Error ? error.message : String(error) };
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

