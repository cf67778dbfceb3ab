#include "addon/engine_wrap.h"

#include "addon/convert.h"
#include "tokenizer/unicode.h"

namespace pagedlm::addon {

// ---- EventBridge ------------------------------------------------------------------------------------

EventBridge::EventBridge(Napi::Env env, Napi::Function on_events)
    : tsfn_(Napi::ThreadSafeFunction::New(env, on_events, "pagedlm-events", 0, 1)) {
  tsfn_.Unref(env);  // an idle engine must not keep the process alive; lib/ refs while requests run
}

void EventBridge::deliver(std::vector<EngineEvent> events) {
  auto* batch = new std::vector<EngineEvent>(std::move(events));
  const napi_status status = tsfn_.NonBlockingCall(batch, [](Napi::Env env, Napi::Function on_events, std::vector<EngineEvent>* b) {
    std::unique_ptr<std::vector<EngineEvent>> owned(b);
    if (env == nullptr || on_events.IsEmpty()) return;  // the environment is shutting down
    Napi::Array array = Napi::Array::New(env, owned->size());
    for (size_t i = 0; i < owned->size(); ++i) array.Set(static_cast<uint32_t>(i), event_to_js(env, (*owned)[i]));
    on_events.Call({array});
  });
  if (status != napi_ok) delete batch;  // closing: nobody is listening any more
}

void EventBridge::release() {
  if (!released_) tsfn_.Release();
  released_ = true;
}

// ---- EngineWrap -------------------------------------------------------------------------------------

Napi::Function EngineWrap::define(Napi::Env env) {
  return DefineClass(env, "NativeEngine",
                     {InstanceMethod<&EngineWrap::submit>("submit"), InstanceMethod<&EngineWrap::cancel>("cancel"),
                      InstanceMethod<&EngineWrap::close>("close"), InstanceMethod<&EngineWrap::tokenize>("tokenize"),
                      InstanceMethod<&EngineWrap::detokenize>("detokenize"), InstanceMethod<&EngineWrap::info>("info"),
                      InstanceMethod<&EngineWrap::stats>("stats"), InstanceMethod<&EngineWrap::cache_stats>("cacheStats"),
                      InstanceMethod<&EngineWrap::clear_cache>("clearCache"), InstanceMethod<&EngineWrap::unpin>("unpin"),
                      InstanceMethod<&EngineWrap::save_cache>("saveCache"), InstanceMethod<&EngineWrap::load_cache>("loadCache"),
                      InstanceMethod<&EngineWrap::ref>("ref"),
                      InstanceMethod<&EngineWrap::unref>("unref")});
}

EngineWrap::EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
  if (info.Length() != 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), "NativeEngine is created by load()");
  std::unique_ptr<LoadedEngine> loaded(info[0].As<Napi::External<LoadedEngine>>().Data());
  engine_ = std::move(loaded->engine);
  bridge_ = std::move(loaded->bridge);
  napi_add_env_cleanup_hook(info.Env(), &EngineWrap::on_env_teardown, this);
}

EngineWrap::~EngineWrap() {
  napi_remove_env_cleanup_hook(Env(), &EngineWrap::on_env_teardown, this);
  shut_down();
}

void EngineWrap::on_env_teardown(void* self) { static_cast<EngineWrap*>(self)->shut_down(); }

// On the JS thread (the finalizer or the environment's teardown): no writing the pool to the offload disk
// tier here, which close() from JavaScript does on a worker thread.
void EngineWrap::shut_down() {
  if (engine_) engine_->close(/*persist_offload=*/false);
  if (bridge_) bridge_->release();
}

Engine& EngineWrap::engine(Napi::Env env) {
  if (!engine_) throw Napi::Error::New(env, "engine is not loaded");
  return *engine_;
}

// submit(id: number, prompt: Int32Array | number[], params: object): throws a coded Error when the
// request can never run.
Napi::Value EngineWrap::submit(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsNumber() || !info[2].IsObject()) throw Napi::TypeError::New(env, "submit(id, tokens, params)");
  GenerateRequest request;
  request.id = static_cast<RequestId>(info[0].As<Napi::Number>().Int64Value());
  request.prompt = int_array(info[1], "prompt token ids");
  request.params = generate_params(info[2].As<Napi::Object>());
  const Status status = engine(env).submit(std::move(request));
  if (!status.is_ok()) throw to_js_error(env, status);
  return env.Undefined();
}

Napi::Value EngineWrap::cancel(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "cancel(id)");
  engine(info.Env()).cancel(static_cast<RequestId>(info[0].As<Napi::Number>().Int64Value()));
  return info.Env().Undefined();
}

namespace {
// Joins the engine thread off the JS thread: it may be finishing a step.
class CloseWorker final : public Napi::AsyncWorker {
 public:
  // `owner` is the JS object of the EngineWrap: referenced so that GC cannot run ~EngineWrap while we join.
  CloseWorker(Napi::Object owner, Engine& engine, EventBridge& bridge)
      : Napi::AsyncWorker(owner.Env()), owner_(Napi::Persistent(owner)), engine_(engine), bridge_(bridge),
        deferred_(Napi::Promise::Deferred::New(owner.Env())) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { engine_.close(); }
  void OnOK() override {
    bridge_.release();
    deferred_.Resolve(Env().Undefined());
  }

 private:
  Napi::ObjectReference owner_;
  Engine& engine_;
  EventBridge& bridge_;
  Napi::Promise::Deferred deferred_;
};
}  // namespace

Napi::Value EngineWrap::close(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (close_started_) {
    auto done = Napi::Promise::Deferred::New(env);
    done.Resolve(env.Undefined());
    return done.Promise();
  }
  close_started_ = true;
  auto* worker = new CloseWorker(Value(), engine(env), *bridge_);
  worker->Queue();
  return worker->promise();
}

// tokenize(text: string, addBos: boolean, parseSpecial: boolean): Int32Array
Napi::Value EngineWrap::tokenize(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "text must be a string");
  EncodeOptions options;
  options.add_bos = info.Length() > 1 && info[1].IsBoolean() ? info[1].As<Napi::Boolean>().Value() : true;
  options.parse_special = info.Length() > 2 && info[2].IsBoolean() && info[2].As<Napi::Boolean>().Value();
  const std::vector<int32_t> ids = engine(env).tokenizer().encode(info[0].As<Napi::String>().Utf8Value(), options);
  Napi::Int32Array out = Napi::Int32Array::New(env, ids.size());
  std::copy(ids.begin(), ids.end(), out.Data());
  return out;
}

Napi::Value EngineWrap::detokenize(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 1) throw Napi::TypeError::New(env, "detokenize(ids)");
  const std::vector<int32_t> ids = int_array(info[0], "token ids");
  const Tokenizer& tokenizer = engine(env).tokenizer();
  for (int32_t id : ids) {
    if (id < 0 || id >= tokenizer.vocab_size()) {
      throw Napi::RangeError::New(env, "token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(tokenizer.vocab_size()) + ")");
    }
  }
  return Napi::String::New(env, utf8_sanitize(tokenizer.decode(ids)));
}

Napi::Value EngineWrap::info(const Napi::CallbackInfo& info) { return info_to_js(info.Env(), engine(info.Env()).info()); }
Napi::Value EngineWrap::stats(const Napi::CallbackInfo& info) { return stats_to_js(info.Env(), engine(info.Env()).stats()); }

Napi::Value EngineWrap::cache_stats(const Napi::CallbackInfo& info) {
  Engine& e = engine(info.Env());
  return cache_stats_to_js(info.Env(), e.stats(), e.info());
}

namespace {
// Runs a cache call that waits for the engine thread, off the JS thread; resolves to its number.
class CacheCommandWorker final : public Napi::AsyncWorker {
 public:
  CacheCommandWorker(Napi::Object owner, std::function<Result<int64_t>()> command)
      : Napi::AsyncWorker(owner.Env()), owner_(Napi::Persistent(owner)), command_(std::move(command)),
        deferred_(Napi::Promise::Deferred::New(owner.Env())), result_(0) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { result_ = command_(); }
  void OnOK() override {
    if (result_.is_ok()) {
      deferred_.Resolve(Napi::Number::New(Env(), static_cast<double>(result_.value())));
    } else {
      deferred_.Reject(to_js_error(Env(), result_.status()).Value());
    }
  }

 private:
  Napi::ObjectReference owner_;
  std::function<Result<int64_t>()> command_;
  Napi::Promise::Deferred deferred_;
  Result<int64_t> result_;
};
}  // namespace

Napi::Value EngineWrap::clear_cache(const Napi::CallbackInfo& info) {
  Engine* e = &engine(info.Env());
  auto* worker = new CacheCommandWorker(Value(), [e] { return e->clear_cache(); });
  worker->Queue();
  return worker->promise();
}

// saveCache(path) / loadCache(path): Promise<number of blocks written / adopted>
Napi::Value EngineWrap::cache_file_call(const Napi::CallbackInfo& info, Result<int64_t> (Engine::*call)(const std::string&)) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "path must be a string");
  Engine* e = &engine(info.Env());
  auto* worker = new CacheCommandWorker(Value(), [e, call, path = info[0].As<Napi::String>().Utf8Value()] { return (e->*call)(path); });
  worker->Queue();
  return worker->promise();
}

Napi::Value EngineWrap::save_cache(const Napi::CallbackInfo& info) { return cache_file_call(info, &Engine::save_cache); }
Napi::Value EngineWrap::load_cache(const Napi::CallbackInfo& info) { return cache_file_call(info, &Engine::load_cache); }

// unpin(id: number): Promise<number of blocks released>
Napi::Value EngineWrap::unpin(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "unpin(id)");
  Engine* e = &engine(info.Env());
  const auto id = static_cast<RequestId>(info[0].As<Napi::Number>().Int64Value());
  auto* worker = new CacheCommandWorker(Value(), [e, id] { return e->unpin(id); });
  worker->Queue();
  return worker->promise();
}

Napi::Value EngineWrap::ref(const Napi::CallbackInfo& info) {
  if (bridge_ && !close_started_) bridge_->ref(info.Env());
  return info.Env().Undefined();
}

Napi::Value EngineWrap::unref(const Napi::CallbackInfo& info) {
  if (bridge_ && !close_started_) bridge_->unref(info.Env());
  return info.Env().Undefined();
}

}  // namespace pagedlm::addon
