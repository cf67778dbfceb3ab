// The JS face of one Engine: `submit`, `cancel`, `close`, `tokenize`, `detokenize`, `info`, `stats`.
// Engine events reach JS through one ThreadSafeFunction per engine, one call per engine step.
// JS thread only, except EventBridge::deliver (engine thread).
#pragma once

#include <napi.h>

#include <memory>

#include "engine/engine.h"

namespace pagedlm::addon {

// Forwards each step's events to the JS `onEvents(array)` callback without blocking the engine thread.
class EventBridge final : public EventSink {
 public:
  EventBridge(Napi::Env env, Napi::Function on_events);
  void deliver(std::vector<EngineEvent> events) override;
  void ref(Napi::Env env) { tsfn_.Ref(env); }
  void unref(Napi::Env env) { tsfn_.Unref(env); }
  void release();  // idempotent; events already queued still reach JS

 private:
  Napi::ThreadSafeFunction tsfn_;
  bool released_ = false;
};

// What a finished load hands to the EngineWrap constructor.
struct LoadedEngine {
  std::unique_ptr<EventBridge> bridge;
  std::unique_ptr<Engine> engine;
};

class EngineWrap final : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function define(Napi::Env env);
  explicit EngineWrap(const Napi::CallbackInfo& info);  // info[0]: External<LoadedEngine>
  ~EngineWrap() override;

 private:
  Napi::Value submit(const Napi::CallbackInfo& info);
  Napi::Value cancel(const Napi::CallbackInfo& info);
  Napi::Value close(const Napi::CallbackInfo& info);
  Napi::Value tokenize(const Napi::CallbackInfo& info);
  Napi::Value detokenize(const Napi::CallbackInfo& info);
  Napi::Value info(const Napi::CallbackInfo& info);
  Napi::Value stats(const Napi::CallbackInfo& info);
  Napi::Value cache_stats(const Napi::CallbackInfo& info);
  Napi::Value clear_cache(const Napi::CallbackInfo& info);
  Napi::Value unpin(const Napi::CallbackInfo& info);
  Napi::Value save_cache(const Napi::CallbackInfo& info);
  Napi::Value load_cache(const Napi::CallbackInfo& info);
  Napi::Value cache_file_call(const Napi::CallbackInfo& info, Result<int64_t> (Engine::*call)(const std::string&));
  Napi::Value ref(const Napi::CallbackInfo& info);
  Napi::Value unref(const Napi::CallbackInfo& info);

  Engine& engine(Napi::Env env);
  static void on_env_teardown(void* self);
  void shut_down();  // closes the engine and releases the bridge, blocking; for teardown and GC

  std::unique_ptr<Engine> engine_;
  std::unique_ptr<EventBridge> bridge_;
  bool close_started_ = false;
};

}  // namespace pagedlm::addon
