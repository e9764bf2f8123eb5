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

/* One MQTT message crossing the ABI; every pointer is borrowed for the duration of the call. */
typedef struct GantryMqttMessage {
  const char* topic;
  const void* payload;
  uint32_t payload_len;
  int qos;
  int retain;
  const char* response_topic; /* MQTT 5; NULL or "" when absent */
  const void* correlation;    /* MQTT 5; NULL when absent */
  uint32_t correlation_len;
} GantryMqttMessage;

typedef void (*GantryMessageFn)(void* arg, const GantryMqttMessage* message);

typedef struct GantryHostV1 {
  uint32_t abi_version; /* GANTRY_PLUGIN_ABI_V1 */
  void* ctx;            /* passed back to every host function */
  void (*log)(void* ctx, int level, const char* message);
  /* Thread-safe: hand an event (a JSON object with a "type" field) to the agent's loop. */
  void (*post_event)(void* ctx, const char* event_json);
  /* Thread-safe: publishes on the host's MQTT connection, for relays that share it (NULL
   * when the host has none). QoS 0 messages are sent only while connected; QoS 1 messages are
   * kept by the host until the broker acknowledges them (also across reconnects), in the
   * order given. Returns 0 when the message was taken, else nonzero. */
  int (*publish)(void* ctx, const GantryMqttMessage* message);
  /* Receives every message matching filter (MQTT wildcards + and #) on the host's connection,
   * from the host's MQTT thread: on_message must not block and must copy what it keeps. Call
   * only from create(); the host subscribes (at QoS 1, and again on every reconnect) when it
   * connects. NULL when the host has no connection to share. Returns 0 on success. */
  int (*subscribe)(void* ctx, const char* filter, GantryMessageFn on_message, void* arg);
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
