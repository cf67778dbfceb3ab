// Reading option objects handed down from lib/ and turning engine Statuses into JS errors.
// lib/ validates options first; these checks keep the addon safe when called directly.
// JS thread only.
#pragma once

#include <napi.h>

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/engine.h"
#include "engine/memory_plan.h"

namespace pagedlm::addon {

// An Error whose `code` is the ErrorCode's name (ERR_MODEL_FORMAT, ...).
Napi::Error to_js_error(Napi::Env env, const Status& status);

std::optional<double> optional_number(const Napi::Object& o, const char* key);
std::optional<bool> optional_bool(const Napi::Object& o, const char* key);
std::vector<std::string> string_array(const Napi::Object& o, const char* key);
std::vector<int32_t> int_array(const Napi::Value& v, const char* what);

EngineOptions engine_options(const Napi::Object& o);
InspectOptions inspect_options(const Napi::Object& o);
GenerateParams generate_params(const Napi::Object& o);
// The grammar a request's `grammar` (GBNF), `jsonSchema` (JSON text) or `json: true` asks for, or null.
// Throws a TypeError whose code is ERR_INVALID_GRAMMAR or ERR_INVALID_SCHEMA, naming where the text is wrong.
std::shared_ptr<const grammar::Grammar> compile_grammar(const Napi::Object& o);
Napi::TypeError grammar_error(Napi::Env env, const Status& status, const char* code);

Napi::Object info_to_js(Napi::Env env, const EngineInfo& info);
Napi::Object inspection_to_js(Napi::Env env, const ModelInspection& inspection, const InspectOptions& options);
Napi::Object stats_to_js(Napi::Env env, const EngineStats& stats);
Napi::Object cache_stats_to_js(Napi::Env env, const EngineStats& stats, const EngineInfo& info);
// The cache salt id of a `cacheSalt` string.
uint64_t salt_id(const std::string& salt);
Napi::Object event_to_js(Napi::Env env, const EngineEvent& event);

}  // namespace pagedlm::addon
