// Module registration and load(): the addon's free functions.
#include <napi.h>

#include <memory>
#include <string>

#include "addon/convert.h"
#include "addon/engine_wrap.h"
#include "addon/tool_calls_wrap.h"

namespace pagedlm::addon {

namespace {

struct AddonData {
  Napi::FunctionReference engine_class;
};

// Loads a model on a libuv worker thread, reporting progress, then builds the NativeEngine.
class LoadWorker final : public Napi::AsyncProgressQueueWorker<double> {
 public:
  LoadWorker(Napi::Env env, std::string path, EngineOptions options, Napi::Function on_events, Napi::Value on_progress)
      : Napi::AsyncProgressQueueWorker<double>(env),
        path_(std::move(path)),
        options_(std::move(options)),
        bridge_(std::make_unique<EventBridge>(env, on_events)),
        deferred_(Napi::Promise::Deferred::New(env)) {
    if (on_progress.IsFunction()) on_progress_ = Napi::Persistent(on_progress.As<Napi::Function>());
  }
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute(const ExecutionProgress& progress) override {
    options_.on_progress = [&progress](double fraction) { progress.Send(&fraction, 1); };
    auto loaded = Engine::load(path_, options_, bridge_.get());
    options_.on_progress = nullptr;
    if (loaded.is_ok()) {
      engine_ = loaded.take();
    } else {
      status_ = loaded.status();
    }
  }

  void OnProgress(const double* data, size_t count) override {
    if (on_progress_.IsEmpty() || count == 0) return;
    try {
      on_progress_.Call({Napi::Number::New(Env(), data[count - 1])});
    } catch (const Napi::Error& error) {
      // A throwing onProgress fails the load with its error once loading has finished.
      progress_error_ = Napi::Persistent(error.Value());
      on_progress_.Reset();
    }
  }

  void OnOK() override {
    const Napi::Env env = Env();
    if (!progress_error_.IsEmpty()) {
      if (engine_) engine_->close(/*persist_offload=*/false);
      engine_.reset();
      bridge_->release();
      deferred_.Reject(progress_error_.Value());
      return;
    }
    if (!engine_) {
      bridge_->release();
      deferred_.Reject(to_js_error(env, status_).Value());
      return;
    }
    auto* loaded = new LoadedEngine{std::move(bridge_), std::move(engine_)};
    Napi::Object wrap = env.GetInstanceData<AddonData>()->engine_class.New({Napi::External<LoadedEngine>::New(env, loaded)});
    deferred_.Resolve(wrap);
  }

  void OnError(const Napi::Error& error) override {
    if (bridge_) bridge_->release();
    deferred_.Reject(error.Value());
  }

 private:
  std::string path_;
  EngineOptions options_;
  std::unique_ptr<EventBridge> bridge_;
  std::unique_ptr<Engine> engine_;
  Status status_;
  Napi::FunctionReference on_progress_;
  Napi::ObjectReference progress_error_;
  Napi::Promise::Deferred deferred_;
};

// Reads a model's header on a libuv worker thread and plans its memory (engine/memory_plan.h).
class InspectWorker final : public Napi::AsyncWorker {
 public:
  InspectWorker(Napi::Env env, std::string path, InspectOptions options)
      : Napi::AsyncWorker(env), path_(std::move(path)), options_(options), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    auto inspected = inspect_model(path_, options_);
    if (inspected.is_ok()) {
      inspection_ = inspected.take();
    } else {
      status_ = inspected.status();
    }
  }

  void OnOK() override {
    if (!status_.is_ok()) {
      deferred_.Reject(to_js_error(Env(), status_).Value());
      return;
    }
    deferred_.Resolve(inspection_to_js(Env(), inspection_, options_));
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  std::string path_;
  InspectOptions options_;
  ModelInspection inspection_;
  Status status_;
  Napi::Promise::Deferred deferred_;
};

// inspect(path: string, options: object): Promise<object>
Napi::Value inspect(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsObject()) throw Napi::TypeError::New(env, "inspect(path, options)");
  auto* worker = new InspectWorker(env, info[0].As<Napi::String>().Utf8Value(), inspect_options(info[1].As<Napi::Object>()));
  worker->Queue();
  return worker->promise();
}

// load(path: string, options: object, onEvents: (events) => void, onProgress?: (fraction) => void): Promise
Napi::Value load(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsObject() || !info[2].IsFunction()) {
    throw Napi::TypeError::New(env, "load(path, options, onEvents, onProgress?)");
  }
  auto* worker = new LoadWorker(env, info[0].As<Napi::String>().Utf8Value(), engine_options(info[1].As<Napi::Object>()),
                                info[2].As<Napi::Function>(), info.Length() > 3 ? info[3] : env.Undefined());
  worker->Queue();
  return worker->promise();
}

// jsonSchemaToGrammar(schema: string, rulePrefix: string): string — GBNF for building bigger grammars.
Napi::Value json_schema_to_grammar(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) throw Napi::TypeError::New(env, "jsonSchemaToGrammar(schema, rulePrefix)");
  Result<std::string> gbnf = grammar::json_schema_to_gbnf(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::String>().Utf8Value());
  if (!gbnf.is_ok()) throw grammar_error(env, gbnf.status(), "ERR_INVALID_SCHEMA");
  return Napi::String::New(env, gbnf.value());
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->engine_class = Napi::Persistent(EngineWrap::define(env));
  env.SetInstanceData(data);
  exports.Set("load", Napi::Function::New(env, load));
  exports.Set("inspect", Napi::Function::New(env, inspect));
  exports.Set("jsonSchemaToGrammar", Napi::Function::New(env, json_schema_to_grammar));
  exports.Set("NativeEngine", data->engine_class.Value());
  export_tool_calls(env, exports);
  return exports;
}

}  // namespace

}  // namespace pagedlm::addon

static Napi::Object pagedlm_init(Napi::Env env, Napi::Object exports) { return pagedlm::addon::init(env, exports); }

NODE_API_MODULE(pagedlm, pagedlm_init)
