/**
 * prom-client's process metrics (CPU, memory, heap, GC, event-loop lag), made once per
 * process and merged into every registry that serves them.
 */

import { collectDefaultMetrics, Registry } from "prom-client";

let processRegistry: Registry | null = null;

/**
 * prom-client's process metrics, made once per process and shared by every node's
 * registry: each `collectDefaultMetrics` call starts a garbage-collection observer and an
 * event-loop monitor that are never stopped, and the observer held its registry, and
 * through the registry's gauges the node and its whole store, long after the node stopped
 * (a process that started nodes one after another kept every one of them).
 */
export function processMetrics(): Registry {
  if (processRegistry === null) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}
