// gantryctl keygen / sign: the operator's signing keys and the signed envelope (docs/revision-format.md).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "cli/command.hpp"
#include "core/fs.hpp"
#include "core/names.hpp"
#include "crypto/jws.hpp"
#include "crypto/keys.hpp"
#include "manifest/revision.hpp"

namespace gantry::cli {
namespace {

// The envelope travels inside a command envelope capped at 1 MiB (docs/protocol.md); leave room for
// the command's own members.
constexpr size_t kMaxEnvelopeBytes = (1u << 20) - 4096;
constexpr std::uint64_t kMaxRevisionBytes = 16u << 20;

[[noreturn]] void Die(int code, const std::string& message) {
  std::cerr << "error: " << message << "\n";
  throw Exit{code};
}

struct KeygenArgs {
  std::string alg, kid, out;
};

void Keygen(const KeygenArgs& a) {
  if (!IsSafeName(a.kid))
    Die(kExitUsage, "--kid '" + a.kid + "' must match ^[a-z0-9][a-z0-9._-]{0,62}$ (it names files)");
  auto dir = std::filesystem::path(a.out);
  std::error_code ec;
  // A directory we create holds private keys: 0700. An existing one keeps its mode.
  if (!std::filesystem::is_directory(dir, ec))
    if (auto d = fs::MakeDirs(dir, 0700); !d) Die(kExitError, d.error().message);
  auto priv = dir / (a.kid + ".key"), pub = dir / (a.kid + ".pem");
  if (auto g = crypto::GenerateKey(a.alg, priv, pub); !g)
    Die(g.error().code == "crypto" || g.error().code == "io" ? kExitError : kExitUsage,
        g.error().message);
  std::cout << "private key: " << priv.string() << " (mode 0600; keep it off devices)\n"
            << "public key:  " << pub.string() << " (copy into each device's trust.keys_dir)\n"
            << "kid:         " << a.kid << " (" << a.alg << ")\n";
}

struct SignArgs {
  std::vector<std::string> keys, kids;
  std::string revision, out;
};

void Sign(const SignArgs& a) {
  if (!a.kids.empty() && a.kids.size() != a.keys.size())
    Die(kExitUsage, "give one --kid per --key (" + std::to_string(a.keys.size()) + " keys, " +
                        std::to_string(a.kids.size()) + " kids), or none to use the key file names");
  auto payload = fs::ReadFile(a.revision, kMaxRevisionBytes);
  if (!payload) Die(kExitUsage, payload.error().message);
  // Refuse to sign what every device would refuse to apply.
  auto rev = manifest::ParseRevision(*payload);
  if (!rev) Die(kExitUsage, a.revision + " is not a valid revision: " + rev.error().String());
  if (auto c = manifest::CheckRevision(*rev); !c)
    Die(kExitUsage, a.revision + ": " + c.error().String());
  for (const auto& w : rev->warnings) std::cerr << "warning: " << w << "\n";
  for (const auto& w : rev->state.warnings) std::cerr << "warning: state: " << w << "\n";

  std::vector<crypto::SigningKey> keys;
  for (size_t i = 0; i < a.keys.size(); ++i) {
    std::string kid =
        a.kids.empty() ? std::filesystem::path(a.keys[i]).stem().string() : a.kids[i];
    auto k = crypto::LoadSigningKey(a.keys[i], kid);
    if (!k) Die(kExitUsage, k.error().message);
    keys.push_back(std::move(*k));
  }
  auto env = crypto::SignJws(*payload, keys);
  if (!env) Die(env.error().code == "crypto" ? kExitError : kExitUsage, env.error().message);
  if (env->size() > kMaxEnvelopeBytes)
    Die(kExitUsage, "the envelope is " + std::to_string(env->size()) +
                        " bytes; an update command carries at most " +
                        std::to_string(kMaxEnvelopeBytes) + " (shrink the state: inline JSON "
                        "belongs in blocks)");
  if (a.out.empty()) {
    std::cout << *env << "\n";
  } else if (auto w = fs::WriteFileAtomic(a.out, *env + "\n", 0644); !w) {
    Die(kExitError, w.error().message);
  }
  std::string who;
  for (const auto& k : keys)
    who += (who.empty() ? "" : ", ") + k.kid() + " (" + std::string(crypto::AlgName(k.alg())) + ")";
  std::cerr << "signed rev " << rev->rev << " seq " << rev->seq << " with " << who << "\n";
}

void RegisterKeyCommands(CLI::App& app) {
  {
    auto a = std::make_shared<KeygenArgs>();
    auto* sub = app.add_subcommand("keygen", "Generate a signing key pair: DIR/KID.key (private) and DIR/KID.pem (public)");
    sub->footer("Example:\n  gantryctl keygen --alg EdDSA --kid ops-2026 --out ./keys\n"
                "  cp ./keys/ops-2026.pem /etc/gantry/keys/   # on each device");
    sub->add_option("--alg", a->alg, "EdDSA (Ed25519) or ES256 (P-256)")
        ->required()
        ->check(CLI::IsMember({"EdDSA", "ES256"}));
    sub->add_option("--kid", a->kid, "key id; devices trust it as <kid>.pem")->required();
    sub->add_option("--out", a->out, "directory for the two files (created 0700 if missing)")->required();
    sub->callback([a] { Keygen(*a); });
  }
  {
    auto a = std::make_shared<SignArgs>();
    auto* sub = app.add_subcommand("sign", "Sign a revision document into a JWS envelope (General JSON)");
    sub->footer("Example:\n  gantryctl sign --key keys/ops-2026.key --kid ops-2026 revision.json --out revision.jws\n"
                "  gantryctl sign --key a.key --kid a --key b.key --kid b revision.json   # threshold 2");
    sub->add_option("--key", a->keys, "private key (PKCS#8 PEM); repeat for more signatures")
        ->required()
        ->allow_extra_args(false);
    sub->add_option("--kid", a->kids, "key id of each --key, in order (default: the key file's name)")
        ->allow_extra_args(false);
    sub->add_option("revision", a->revision, "the revision document (JSON)")->required();
    sub->add_option("--out", a->out, "write the envelope here instead of stdout");
    sub->callback([a] { Sign(*a); });
  }
}

const CommandRegistration kRegistration(RegisterKeyCommands);

}  // namespace
}  // namespace gantry::cli
