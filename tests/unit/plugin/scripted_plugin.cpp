// A plugin for the loader's tests: kind "scripted"; call(op) answers by op name, so the test
// can make it succeed, fail, answer garbage or nothing. create() fails when the config says so.
#include <cstdlib>
#include <cstring>
#include <string>

#include "gantry_plugin.h"

namespace {

char* Dup(const std::string& s) { return strdup(s.c_str()); }

int g_instances = 0;  // live instances, reported by "count" (destroy() must run)

void* Create(const GantryHostV1*, const char* config_json, char** error) {
  if (std::string(config_json).find("\"fail\"") != std::string::npos) {
    *error = Dup("asked to fail");
    return nullptr;
  }
  ++g_instances;
  return &g_instances;
}
void Destroy(void*) { --g_instances; }
char* Call(void*, const char* op, const char* request_json) {
  std::string o = op;
  if (o == "echo") return Dup(std::string(R"({"ok": true, "request": )") + request_json + "}");
  if (o == "count") return Dup(R"({"ok": true, "instances": )" + std::to_string(g_instances) + "}");
  if (o == "fail") return Dup(R"({"ok": false, "error": {"code": "helper", "message": "gone"}})");
  if (o == "garbage") return Dup("not json");
  return nullptr;
}
void FreeString(char* s) { std::free(s); }

const GantryPluginV1 kPlugin = {GANTRY_PLUGIN_ABI_V1, "scripted", "scripted", Create, Destroy, Call, FreeString};

}  // namespace

extern "C" const GantryPluginV1* gantry_plugin_v1(void) { return &kPlugin; }
