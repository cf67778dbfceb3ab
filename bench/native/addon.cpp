// pagedlm_bench.node: the read-bandwidth probe for the benchmark scripts (bench/native/index.js wraps it).
// Built only on request (PAGEDLM_BUILD_BENCH), never shipped with pagedlm's addon.
#include <napi.h>

#include <memory>
#include <new>
#include <string>

#include "read_bandwidth.h"

namespace pagedlm::bench {

namespace {

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

// Times streaming reads on a libuv worker thread, off the event loop that drives the runs being timed.
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

// openReadBandwidthProbe(bytes: number, threads: number): Promise<external>; index.js checks the arguments.
Napi::Value open_read_bandwidth_probe(const Napi::CallbackInfo& info) {
  const Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsNumber()) throw Napi::TypeError::New(env, "openReadBandwidthProbe(bytes, threads)");
  auto* worker = new OpenProbeWorker(env, static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue()), info[1].As<Napi::Number>().Int32Value());
  worker->Queue();
  return worker->promise();
}

// measureReadBandwidthProbe(probe, passes: number): Promise<object>; index.js runs one at a time per probe.
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
  exports.Set("openReadBandwidthProbe", Napi::Function::New(env, open_read_bandwidth_probe));
  exports.Set("measureReadBandwidthProbe", Napi::Function::New(env, measure_read_bandwidth_probe));
  exports.Set("closeReadBandwidthProbe", Napi::Function::New(env, close_read_bandwidth_probe));
  return exports;
}

}  // namespace

}  // namespace pagedlm::bench

static Napi::Object pagedlm_bench_init(Napi::Env env, Napi::Object exports) { return pagedlm::bench::init(env, exports); }

NODE_API_MODULE(pagedlm_bench, pagedlm_bench_init)
