"""digits-app ServerApp: FedAvg with a server-side evaluation on held-out data."""

from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from digits_app import task

app = ServerApp()


def evaluate_fn(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    """Centralized evaluation; FedAvg calls it before round 1 and after each round."""
    x_test, y_test = task.load_test_data()
    loss, acc = task.evaluate(arrays.to_numpy_ndarrays(), x_test, y_test)
    return MetricRecord({"test_loss": loss, "test_acc": acc})


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run FedAvg for `num-server-rounds` rounds."""
    num_rounds = int(context.run_config["num-server-rounds"])
    learning_rate = float(context.run_config["learning-rate"])
    model_type = str(context.run_config["model-type"])

    strategy = FedAvg()  # every connected node trains and evaluates each round
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(task.init_params(model_type)),
        num_rounds=num_rounds,
        train_config=ConfigRecord({"lr": learning_rate}),
        evaluate_fn=evaluate_fn,
    )

    final = result.evaluate_metrics_serverapp.get(num_rounds)
    print(f"Final server-side evaluation: {final}")
