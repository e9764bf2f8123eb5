#include "txn/admission.hpp"

#include "core/names.hpp"
#include "core/time.hpp"

namespace gantry::txn {

Expected<Admitted> Admit(const nlohmann::json& envelope, std::int64_t high_seq,
                         const AdmissionPolicy& policy, cache::BlockCache& cache,
                         manifest::Revision* partial) {
  auto verified = crypto::VerifyJws(envelope, *policy.trust, policy.threshold);
  if (!verified) return Unexpected(verified.error());
  manifest::StateOptions opts;
  opts.bsp = policy.reject_bsp ? manifest::BspPolicy::kReject : manifest::BspPolicy::kIgnore;
  auto rev = manifest::ParseRevision(verified->payload, opts);
  if (!rev) {
    // Name the revision in the WONTGO when at least the document's header reads.
    auto doc = nlohmann::json::parse(verified->payload, nullptr, false);
    if (partial && doc.is_object()) {
      // Only a rev that is a safe name is echoed: the WONTGO must not carry a hostile one.
      if (doc.contains("rev") && doc["rev"].is_string() && IsSafeName(doc["rev"].get_ref<const std::string&>()))
        partial->rev = doc["rev"];
      if (doc.contains("seq") && doc["seq"].is_number_integer() && doc["seq"].get<std::int64_t>() >= 0)
        partial->seq = doc["seq"];
    }
    return Unexpected(rev.error());
  }
  if (partial) {
    partial->rev = rev->rev;
    partial->seq = rev->seq;
  }
  if (auto r = manifest::CheckRevision(*rev); !r) return Unexpected(r.error());
  if (auto r = manifest::CheckApplicable(*rev, policy.device_id, policy.groups, high_seq, NowUnix()); !r)
    return Unexpected(r.error());
  std::vector<cache::BlockRef> blocks;
  for (const auto& id : rev->state.ReferencedBlocks()) blocks.push_back({id, rev->objects.at(id)});
  if (auto r = cache.CheckSpace(blocks); !r) return Unexpected(r.error());
  return Admitted{std::move(*rev), std::move(verified->payload)};
}

}  // namespace gantry::txn
