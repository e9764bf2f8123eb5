/* The one ABI between gantryd and its plugins (docs/architecture.md).
 *
 * A plugin is a shared object exporting
 *     const GantryPluginV1* gantry_plugin_v1(void);
 * Requests and replies are JSON text, so the ABI stays fixed while operations grow; a plugin
 * never sees the agent's internals, only what GantryHostV1 hands it. */
#ifndef GANTRY_PLUGIN_H
#define GANTRY_PLUGIN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GANTRY_PLUGIN_ABI_V1 1u

enum GantryLogLevel { GANTRY_LOG_DEBUG = 0, GANTRY_LOG_INFO = 1, GANTRY_LOG_WARN = 2, GANTRY_LOG_ERROR = 3 };

typedef struct GantryHostV1 {
  uint32_t abi_version; /* GANTRY_PLUGIN_ABI_V1 */
  void* ctx;            /* passed back to every host function */
  void (*log)(void* ctx, int level, const char* message);
  /* Thread-safe: hand an event (a JSON object with a "type" field) to the agent's loop. */
  void (*post_event)(void* ctx, const char* event_json);
  /* Thread-safe: the host's MQTT connection, for relays that share it (may be NULL). */
  int (*publish)(void* ctx, const char* topic, const void* payload, uint32_t len, int qos,
                 int retain);
} GantryHostV1;

typedef struct GantryPluginV1 {
  uint32_t abi_version; /* GANTRY_PLUGIN_ABI_V1 */
  const char* kind;     /* "runtime" or "relay" */
  const char* name;     /* "lxc", "mqtt", "coap" */
  /* config_json: the plugin's settings (paths, options) as a JSON object. Returns the
   * instance or NULL with *error set (free with free_string). */
  void* (*create)(const GantryHostV1* host, const char* config_json, char** error);
  void (*destroy)(void* instance);
  /* Runs one operation. Returns a JSON reply owned by the caller (free_string): on failure
   * {"ok": false, "error": {"code", "message"}}, on success {"ok": true, ...}. Blocking; the
   * host calls it from a worker thread, never from its event loop. */
  char* (*call)(void* instance, const char* op, const char* request_json);
  void (*free_string)(char* s);
} GantryPluginV1;

typedef const GantryPluginV1* (*GantryPluginEntryV1)(void);

#ifdef __cplusplus
}
#endif

#endif /* GANTRY_PLUGIN_H */
