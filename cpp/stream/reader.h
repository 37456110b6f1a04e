// Streams weight tensors from the model's weights file: a worker thread reads ahead, in the order the
// run will ask for them, while the bytes it holds stay under a budget; each tensor's checksum is verified
// and the page cache behind every read is dropped, so memory tracks the weights in flight, not the model.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace onnxstream {

struct WeightEntry {
  std::string name;
  uint64_t offset = 0, nbytes = 0, hash = 0;
};

// The reader's lock and the bytes its buffers hold: shared with every buffer, since a buffer (a resident weight,
// an array the caller kept) may outlive the reader that read it.
struct ReaderState {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t held = 0, peak_held = 0;
};

// One tensor's bytes, 64-byte aligned. Frees itself and returns its bytes to the budget when dropped.
struct WeightBuffer {
  std::shared_ptr<ReaderState> owner;
  uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  ~WeightBuffer();
};

class WeightReader {
 public:
  // Checks the header and the file size; reads no tensor.
  WeightReader(const std::string& path, std::vector<WeightEntry> entries, uint64_t budget_bytes);
  ~WeightReader();

  void start(std::vector<int> order);          // a run begins: prefetch these tensors in this order
  std::shared_ptr<WeightBuffer> get(int id);   // blocks until tensor `id` is read and verified
  void stop();                                 // the run ended (or failed): cancel the read-ahead
  // Rows `rows` of tensor `id` (a table of row_nbytes-byte rows whose blocks of rows_per_block rows carry their
  // own checksums), gathered into one buffer in that order; reads only the blocks holding those rows.
  std::shared_ptr<WeightBuffer> read_rows(int id, uint64_t row_nbytes, uint64_t rows_per_block,
                                          const std::vector<uint64_t>& block_hashes, const std::vector<int64_t>& rows);

  uint64_t bytes_read() const { return bytes_read_; }
  uint64_t peak_held() const { return state_->peak_held; }

 private:
  struct Slot {
    std::shared_ptr<WeightBuffer> buf;
    std::string error;
    bool done = false;
  };
  std::shared_ptr<WeightBuffer> allocate(uint64_t nbytes);
  bool pread_all(uint8_t* dst, uint64_t nbytes, uint64_t offset, const std::string& name, std::string* error);
  std::shared_ptr<WeightBuffer> read_now(int id, std::string* error);
  void worker_loop();

  std::string path_;
  int fd_ = -1;
  std::vector<WeightEntry> entries_;
  uint64_t budget_;

  std::shared_ptr<ReaderState> state_ = std::make_shared<ReaderState>();  // mu and cv guard the members below
  std::vector<int> order_;
  std::vector<Slot> slots_;   // one per position in order_
  size_t consume_pos_ = 0;    // next position the run will ask for
  bool cancel_ = false;
  std::thread worker_;
  uint64_t bytes_read_ = 0;
};

}  // namespace onnxstream
