#include "manifest/revision.hpp"

#include <gtest/gtest.h>

#include "core/time.hpp"
#include "state_builder.hpp"
#include "test_util.hpp"

using namespace gantry;
using namespace gantry::manifest;
using nlohmann::json;

namespace {

Error ParseError(const std::string& text) {
  auto r = ParseRevision(text);
  EXPECT_FALSE(r) << "parsed: " << text.substr(0, 200);
  return r ? Error{} : r.error();
}

Error ParseError(const json& doc) { return ParseError(doc.dump()); }

Revision Parsed(const json& doc) {
  auto r = ParseRevision(doc.dump());
  EXPECT_TRUE(r) << r.error().String();
  return r.value_or(Revision{});
}

}  // namespace

TEST(Revision, SampleRevisionParsesAndIsComplete) {
  auto text = test::Slurp(std::filesystem::path(GANTRY_STATES_DIR) / "revision.json");
  auto r = ParseRevision(text);
  ASSERT_TRUE(r) << r.error().String();
  EXPECT_EQ(r->rev, "42");
  EXPECT_EQ(r->seq, 42);
  EXPECT_EQ(r->targets, (std::vector<std::string>{"gw-0001", "group:lab"}));
  ASSERT_TRUE(r->expires);
  EXPECT_EQ(Rfc3339(*r->expires), "2030-01-31T00:00:00Z");
  EXPECT_EQ(r->objects_base, "https://blocks.example.net/objects/");
  EXPECT_EQ(r->objects.size(), 5u);
  ASSERT_EQ(r->state.containers.size(), 1u);
  ASSERT_EQ(r->state.sensors.size(), 1u);
  ASSERT_TRUE(r->state.sensors[0].size);
  EXPECT_EQ(*r->state.sensors[0].size, r->objects.at(r->state.sensors[0].block));
  EXPECT_TRUE(CheckRevision(*r));
  std::uint64_t expected = 0;
  for (const auto& b : r->state.ReferencedBlocks()) expected += r->objects.at(b);
  EXPECT_EQ(r->ReferencedBytes(), expected);
  EXPECT_GT(expected, 0u);
}

TEST(Revision, MinimalRevisionNeedsNoOptionalFields) {
  json doc = {{"rev", "r1"}, {"seq", 1}, {"targets", {"gw-0001"}}, {"state", {{"#spec", kStateSpec}}}};
  auto r = Parsed(doc);
  EXPECT_FALSE(r.expires);
  EXPECT_FALSE(r.objects_base);
  EXPECT_TRUE(r.objects.empty());
  EXPECT_TRUE(CheckRevision(r));
}

TEST(Revision, MalformedJsonIsBadRevision) {
  for (const std::string bad : {"", "{", "{\"rev\":", "[1,2", "nul", "{\"rev\":\"1\"}}", "\xff\xfe"}) {
    auto e = ParseError(bad);
    EXPECT_EQ(e.code, "bad_revision") << bad;
  }
  EXPECT_EQ(ParseError(std::string("[]")).code, "bad_revision");
  EXPECT_EQ(ParseError(std::string("\"x\"")).code, "bad_revision");
}

TEST(Revision, DeepNestingIsRefusedBeforeParsing) {
  json doc = test::RevisionFor(test::OneContainerState());
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  std::string text = doc.dump();
  text.insert(text.size() - 1, ",\"x\":" + deep);
  auto e = ParseError(text);
  EXPECT_EQ(e.code, "bad_revision");
  EXPECT_NE(e.message.find("nested deeper"), std::string::npos) << e.message;
  // Brackets inside strings do not count.
  json strings = doc;
  strings["state"]["web/run.json"]["description"] = std::string(1000, '[');
  EXPECT_TRUE(ParseRevision(strings.dump()));
}

TEST(Revision, FieldsAreStrictlyTyped) {
  const json good = test::RevisionFor(test::OneContainerState());
  auto with = [&](const std::string& field, const json& value) {
    json d = good;
    if (value.is_discarded()) d.erase(field);
    else d[field] = value;
    return ParseError(d);
  };
  const json kErase = json::value_t::discarded;
  struct Case {
    std::string field;
    json value;
    std::string code;
  };
  std::vector<Case> cases = {
      {"rev", kErase, "bad_revision"},
      {"rev", 42, "bad_revision"},
      {"rev", "", "bad_name"},
      {"rev", "Rev-1", "bad_name"},
      {"rev", "../42", "bad_name"},
      {"rev", "a/b", "bad_name"},
      {"seq", kErase, "bad_revision"},
      {"seq", 0, "bad_revision"},
      {"seq", -5, "bad_revision"},
      {"seq", 1.5, "bad_revision"},
      {"seq", 42.0, "bad_revision"},
      {"seq", "42", "bad_revision"},
      {"seq", true, "bad_revision"},
      {"seq", 18446744073709551615ull, "bad_revision"},
      {"targets", kErase, "bad_revision"},
      {"targets", json::array(), "bad_revision"},
      {"targets", "gw-0001", "bad_revision"},
      {"targets", {1}, "bad_revision"},
      {"targets", {"gw 0001"}, "bad_name"},
      {"targets", {"group:"}, "bad_name"},
      {"targets", {"group:a/b"}, "bad_name"},
      {"expires", "tomorrow", "bad_revision"},
      {"expires", "2027-01-31", "bad_revision"},
      {"expires", 1800000000, "bad_revision"},
      {"objects_base", 1, "bad_revision"},
      {"objects_base", "", "bad_revision"},
      {"objects_base", "ftp://mirror/objects/", "bad_revision"},
      {"objects_base", "/media/usb/objects", "bad_revision"},
      {"objects", json::array(), "bad_revision"},
      {"objects", {{std::string(64, 'A'), {{"size", 1}}}}, "bad_block_id"},
      {"objects", {{"abc", {{"size", 1}}}}, "bad_block_id"},
      {"objects", {{test::Block("a"), 5}}, "bad_revision"},
      {"objects", {{test::Block("a"), json::object()}}, "bad_revision"},
      {"objects", {{test::Block("a"), {{"size", -1}}}}, "bad_revision"},
      {"objects", {{test::Block("a"), {{"size", "1"}}}}, "bad_revision"},
      {"objects", {{test::Block("a"), {{"size", 1.5}}}}, "bad_revision"},
      {"state", kErase, "bad_revision"},
      {"state", json::array(), "bad_state"},
      {"state", test::Block("s"), "bad_state"},
  };
  for (const auto& c : cases) {
    auto e = with(c.field, c.value);
    EXPECT_EQ(e.code, c.code) << c.field << " = " << c.value.dump() << ": " << e.String();
    EXPECT_EQ(e.message.rfind(c.field == "state" && c.code != "bad_revision" ? "state" : c.field, 0), 0u)
        << "message should start with the path: " << e.message;
  }
}

TEST(Revision, StateErrorsKeepTheirCodeWithStatePrefix) {
  json st = test::OneContainerState();
  st["web/run.json"]["name"] = "../x";
  auto e = ParseError(test::RevisionFor(st));
  EXPECT_EQ(e.code, "bad_name");
  EXPECT_EQ(e.message.rfind("state: web/run.json.name", 0), 0u) << e.message;
  json bad_block = test::OneContainerState();
  bad_block["web/root.squashfs"] = "1234";
  EXPECT_EQ(ParseError(test::RevisionFor(bad_block)).code, "bad_block_id");
}

TEST(Revision, UnknownTopLevelFieldsAreErrorsUnknownObjectMembersWarnings) {
  json doc = test::RevisionFor(test::OneContainerState());
  doc["objects"].begin()->operator[]("url") = "x";
  auto r = Parsed(doc);
  ASSERT_EQ(r.warnings.size(), 1u);
  doc["signed_by"] = "ci";
  auto e = ParseError(doc);
  EXPECT_EQ(e.code, "bad_revision");
  EXPECT_EQ(e.message.rfind("signed_by", 0), 0u) << e.message;
}

TEST(Revision, EveryStateBlockMustBeInObjects) {
  json st = test::OneContainerState();
  st["bsp/kernel.img"] = test::Block("kernel");
  json doc = test::RevisionFor(st);
  EXPECT_TRUE(CheckRevision(Parsed(doc)));

  json missing = doc;
  missing["objects"].erase(test::Block("web-root"));
  auto e = CheckRevision(Parsed(missing));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, "missing_object");
  EXPECT_NE(e.error().message.find("web/root.squashfs"), std::string::npos) << e.error().message;

  // Ignored keys are not fetched, but the revision still has to list them.
  json bsp_missing = doc;
  bsp_missing["objects"].erase(test::Block("kernel"));
  auto b = CheckRevision(Parsed(bsp_missing));
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("bsp/kernel.img"), std::string::npos);
}

TEST(Revision, ApplicabilityChecks) {
  json doc = test::RevisionFor(test::OneContainerState(), "42", 42);
  doc["expires"] = "2030-01-01T00:00:00Z";
  auto r = Parsed(doc);
  const std::int64_t now = *ParseRfc3339("2029-06-01T00:00:00Z");
  const std::int64_t expiry = *ParseRfc3339("2030-01-01T00:00:00Z");

  EXPECT_TRUE(CheckApplicable(r, "gw-0001", {}, 41, now));
  EXPECT_TRUE(CheckApplicable(r, "gw-0009", {"lab"}, 0, now));

  auto code = [&](const std::string& dev, std::vector<std::string> groups, std::int64_t committed,
                  std::int64_t t) {
    auto e = CheckApplicable(r, dev, groups, committed, t);
    return e ? std::string("ok") : e.error().code;
  };
  EXPECT_EQ(code("gw-0002", {"prod", "Lab"}, 0, now), "not_addressed");
  EXPECT_EQ(code("gw-00011", {}, 0, now), "not_addressed");
  EXPECT_EQ(code("gw-0001", {}, 42, now), "downgrade");
  EXPECT_EQ(code("gw-0001", {}, 43, now), "downgrade");
  EXPECT_EQ(code("gw-0001", {}, 0, expiry), "expired");
  EXPECT_EQ(code("gw-0001", {}, 0, expiry + 1), "expired");
  EXPECT_EQ(code("gw-0001", {}, 0, expiry - 1), "ok");
  // The order is fixed: not addressed, then expired, then downgrade.
  EXPECT_EQ(code("gw-0002", {}, 99, expiry + 1), "not_addressed");
  EXPECT_EQ(code("gw-0001", {}, 99, expiry + 1), "expired");

  auto msg = CheckApplicable(r, "gw-0001", {}, 42, now).error().message;
  EXPECT_NE(msg.find("42"), std::string::npos) << msg;
  auto nmsg = CheckApplicable(r, "gw-0002", {"prod"}, 0, now).error().message;
  EXPECT_NE(nmsg.find("gw-0002"), std::string::npos) << nmsg;
  EXPECT_NE(nmsg.find("group:lab"), std::string::npos) << nmsg;
}
