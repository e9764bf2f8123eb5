#pragma once
// Everything an update must pass before the agent accepts it (docs/revision-format.md, docs/protocol.md): signature and
// threshold, the revision document, the state, applicability, and space. A refusal here is
// answered ok:false plus one WONTGO; nothing is changed.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cache/block_cache.hpp"
#include "core/error.hpp"
#include "crypto/jws.hpp"
#include "manifest/revision.hpp"

namespace gantry::txn {

struct AdmissionPolicy {
  const crypto::TrustStore* trust = nullptr;
  int threshold = 1;
  std::string device_id;
  std::vector<std::string> groups;
  bool reject_bsp = false;
};

struct Admitted {
  manifest::Revision revision;
  std::string document;  // the verified payload bytes
};

// high_seq: the highest seq ever committed. Rev and seq of a refused update are filled in
// *partial when the payload could be read, so the WONTGO can name them.
Expected<Admitted> Admit(const nlohmann::json& envelope, std::int64_t high_seq,
                         const AdmissionPolicy& policy, cache::BlockCache& cache,
                         manifest::Revision* partial = nullptr);

}  // namespace gantry::txn
