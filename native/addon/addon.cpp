// Module registration, load() and the read-bandwidth probe: the addon's free functions.
#include <napi.h>

#include <memory>
#include <string>

#include "addon/convert.h"
#include "addon/engine_wrap.h"
#include "backend/cpu/memory_bandwidth.h"

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
      if (engine_) engine_->close();
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

// A ReadBandwidthProbe as JS holds it. close() lets go of the probe; a measurement still running keeps it
// alive until it ends.
struct ProbeHandle {
  std::shared_ptr<ReadBandwidthProbe> probe;
};

// Allocates and touches a probe's buffer on a libuv worker thread (seconds for hundreds of MiB).
class OpenProbeWorker final : public Napi::AsyncWorker {
 public:
  OpenProbeWorker(Napi::Env env, size_t bytes, int threads)
      : Napi::AsyncWorker(env), bytes_(bytes), threads_(threads), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      probe_ = std::make_shared<ReadBandwidthProbe>(bytes_, threads_);
    } catch (const std::bad_alloc&) {
      SetError("cannot allocate the " + std::to_string(bytes_ >> 20) + " MiB bandwidth buffer");
    }
  }
  void OnOK() override {
    auto* handle = new ProbeHandle{std::move(probe_)};
    deferred_.Resolve(Napi::External<ProbeHandle>::New(Env(), handle, [](Napi::Env, ProbeHandle* h) { delete h; }));
  }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  size_t bytes_;
  int threads_;
  std::shared_ptr<ReadBandwidthProbe> probe_;
  Napi::Promise::Deferred deferred_;
};

// Times streaming reads on a libuv worker thread: the figure decode speed is judged against.
class MeasureProbeWorker final : public Napi::AsyncWorker {
 public:
  MeasureProbeWorker(Napi::Env env, std::shared_ptr<ReadBandwidthProbe> probe, int passes)
      : Napi::AsyncWorker(env), probe_(std::move(probe)), passes_(passes), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override { sample_ = probe_->measure(passes_); }
  void OnOK() override {
    Napi::Object result = Napi::Object::New(Env());
    result.Set("bytesPerSecond", sample_.bytes_per_second);
    result.Set("medianBytesPerSecond", sample_.median_bytes_per_second);
    result.Set("bufferBytes", static_cast<double>(sample_.buffer_bytes));
    result.Set("threads", sample_.threads);
    result.Set("passes", sample_.passes);
    deferred_.Resolve(result);
  }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  std::shared_ptr<ReadBandwidthProbe> probe_;
  int passes_;
  BandwidthSample sample_{};
  Napi::Promise::Deferred deferred_;
};

ProbeHandle* probe_handle(const Napi::CallbackInfo& info, const char* usage) {
  if (info.Length() < 1 || !info[0].IsExternal()) throw Napi::TypeError::New(info.Env(), usage);
  return info[0].As<Napi::External<ProbeHandle>>().Data();
}

// openReadBandwidthProbe(bytes: number, threads: number): Promise<external>; lib/ checks the arguments.
Napi::Value open_read_bandwidth_probe(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "openReadBandwidthProbe(bytes, threads)");
  auto* worker = new OpenProbeWorker(env, static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue()), info[1].As<Napi::Number>().Int32Value());
  worker->Queue();
  return worker->promise();
}

// measureReadBandwidthProbe(probe, passes: number): Promise<object>; lib/ runs one at a time per probe.
Napi::Value measure_read_bandwidth_probe(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  ProbeHandle* handle = probe_handle(info, "measureReadBandwidthProbe(probe, passes)");
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(env, "measureReadBandwidthProbe(probe, passes)");
  if (!handle->probe) {
    Napi::Error error = Napi::Error::New(env, "the bandwidth probe is closed");
    error.Set("code", Napi::String::New(env, "ERR_CLOSED"));
    throw error;
  }
  auto* worker = new MeasureProbeWorker(env, handle->probe, info[1].As<Napi::Number>().Int32Value());
  worker->Queue();
  return worker->promise();
}

// closeReadBandwidthProbe(probe): frees the buffer once no measurement holds it.
Napi::Value close_read_bandwidth_probe(const Napi::CallbackInfo& info) {
  probe_handle(info, "closeReadBandwidthProbe(probe)")->probe.reset();
  return info.Env().Undefined();
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  data->engine_class = Napi::Persistent(EngineWrap::define(env));
  env.SetInstanceData(data);
  exports.Set("load", Napi::Function::New(env, load));
  exports.Set("NativeEngine", data->engine_class.Value());
  exports.Set("openReadBandwidthProbe", Napi::Function::New(env, open_read_bandwidth_probe));
  exports.Set("measureReadBandwidthProbe", Napi::Function::New(env, measure_read_bandwidth_probe));
  exports.Set("closeReadBandwidthProbe", Napi::Function::New(env, close_read_bandwidth_probe));
  return exports;
}

}  // namespace

}  // namespace pagedlm::addon

static Napi::Object pagedlm_init(Napi::Env env, Napi::Object exports) { return pagedlm::addon::init(env, exports); }

NODE_API_MODULE(pagedlm, pagedlm_init)
